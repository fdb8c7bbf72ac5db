import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { decodeActivationFrame, encodeActivationFrame, mulberry32, type ModelSpec } from "@crowdtrain/protocol";
import { buildModel, buildStage, computeGradient, modelLayers, readWeights } from "@crowdtrain/training";
import { ActivationViolation, microBatchRows, partitionLayers, PipelineTimeout, type ScheduleKind } from "../src/index.ts";
import { runLocalPipeline, type LocalPipelineOptions } from "./support/local-pipeline.ts";

/**
 * A K-stage pipeline computes the gradient a single model computes on the same weights and batch:
 * the stages' gradients, concatenated, equal computeGradient's within float32 rounding (the
 * micro-batches' sums run in another order), for both schedules, MLP and CNN, K ∈ {2, 3},
 * M ∈ {1, 4}. Frames go through the real codec and inbox checks.
 */
beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

const SEED = 5;
const ROWS = 10;
const CASES: { name: string; spec: ModelSpec; inputShape: number[]; classes: number }[] = [
  { name: "mlp", spec: { kind: "mlp", hidden: [16, 12, 8], activation: "tanh" }, inputShape: [6, 6, 1], classes: 4 },
  { name: "cnn", spec: { kind: "cnn", filters: [4, 6], kernelSize: 3, dense: 8 }, inputShape: [8, 8, 1], classes: 3 },
];

interface Setup {
  whole: tf.Sequential;
  xs: tf.Tensor;
  ys: tf.Tensor;
  options: (stages: number, micros: number, schedule: ScheduleKind) => LocalPipelineOptions;
  dispose: () => void;
}

function setup(c: (typeof CASES)[number]): Setup {
  const layers = modelLayers(c.spec, c.inputShape, c.classes);
  const random = mulberry32(99);
  const xs = tf.tensor(Float32Array.from({ length: ROWS * c.inputShape.reduce((a, b) => a * b, 1) }, () => random() * 2 - 1), [ROWS, ...c.inputShape]);
  const ys = tf.oneHot(tf.tensor1d(Array.from({ length: ROWS }, (_, i) => (i * 7) % c.classes), "int32"), c.classes).toFloat();
  const built: tf.LayersModel[] = [];
  const micro: tf.Tensor[] = [];
  return {
    whole: buildModel(c.spec, c.inputShape, c.classes, SEED),
    xs,
    ys,
    options: (stages, micros, schedule) => {
      const cuts = partitionLayers({ layers, stages, memory: { optimizerBuffers: 1, microRows: ROWS, micros, schedule } });
      const models = cuts.map((cut) => buildStage(layers, cut.from, cut.to, SEED));
      built.push(...models);
      const microRows = microBatchRows(ROWS, micros);
      const starts = microRows.map((_, m) => microRows.slice(0, m).reduce((a, b) => a + b, 0));
      const inputs = microRows.map((rows, m) => tf.slice(xs, starts[m] as number, rows));
      const labels = microRows.map((rows, m) => tf.slice(ys, starts[m] as number, rows));
      micro.push(...inputs, ...labels);
      return { layers, cuts, models, schedule, microRows, inputs, labels };
    },
    dispose: () => {
      for (const model of [...built]) model.dispose();
      tf.dispose([xs, ys, ...micro]);
    },
  };
}

const concat = (parts: readonly Float32Array[]): Float32Array => {
  const out = new Float32Array(parts.reduce((sum, p) => sum + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
};

function expectClose(actual: Float32Array, expected: Float32Array, what: string): void {
  expect(actual.length, what).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    const error = Math.abs((actual[i] as number) - (expected[i] as number)) - 1e-4 * Math.abs(expected[i] as number);
    worst = Math.max(worst, error);
  }
  expect(worst, `${what}: worst error beyond 1e-4 relative`).toBeLessThan(1e-5);
}

describe.each(CASES)("a pipeline of the $name", (c) => {
  it.each([
    [2, 1, "gpipe"],
    [2, 4, "gpipe"],
    [3, 1, "1f1b"],
    [3, 4, "gpipe"],
    [3, 4, "1f1b"],
  ] as const)("with K=%i stages and M=%i micro-batches (%s) computes the single model's gradient and loss", async (stages, micros, schedule) => {
    const s = setup(c);
    try {
      const reference = computeGradient(s.whole, s.xs, s.ys);
      const options = s.options(stages, micros, schedule);
      // Stages built alone hold exactly the whole model's initial weights.
      expect(concat(options.models.map(readWeights))).toEqual(readWeights(s.whole));
      const before = tf.memory().numTensors;
      const results = await runLocalPipeline(options);
      expect(tf.memory().numTensors, "tensors left behind by the round").toBe(before);
      expectClose(concat(results.map((r) => r.gradient)), reference.gradient, `K=${stages} M=${micros} ${schedule}`);
      expect(results.at(-1)?.loss).toBeCloseTo(reference.loss, 5);
      expect(results.slice(0, -1).every((r) => r.loss === undefined)).toBe(true);
      // Every stage but the first sends gradients back, every stage but the last activations on.
      for (const [k, result] of results.entries()) {
        // Busy: a forward per micro-batch (not the last stage: its forward runs in its backward), a backward each, one read-back.
        const count = (kind: string): number => result.busy.filter((b) => b.kind === kind).length;
        expect([count("forward"), count("backward"), count("gradient")]).toEqual([k === stages - 1 ? 0 : micros, micros, 1]);
        expect(result.bytesSent > 0).toBe(stages > 1);
        expect(result.span.end).toBeGreaterThanOrEqual(result.span.start);
        if (k > 0 && k < stages - 1) expect(result.bytesSent).toBeGreaterThan(results[0]!.bytesSent);
      }
    } finally {
      s.dispose();
    }
  });
});

describe("a pipeline round with many frames per micro-batch", () => {
  it("assembles them (16 values a frame) into the single model's gradient", async () => {
    const s = setup(CASES[1]!);
    try {
      const reference = computeGradient(s.whole, s.xs, s.ys);
      const results = await runLocalPipeline({ ...s.options(3, 4, "1f1b"), maxFrameBytes: 32 + 4 * 16 });
      expectClose(concat(results.map((r) => r.gradient)), reference.gradient, "cnn, K=3, M=4, 1f1b, 16-value frames");
      // The stage in the middle sends both ways: far more than one frame per micro-batch.
      expect(results[1]!.bytesSent).toBeGreaterThan(8 * (32 + 4 * 16));
    } finally {
      s.dispose();
    }
  });
});

describe("a pipeline round refuses bad activations", () => {
  const c = CASES[0]!;
  /** Rewrites stage 0's forward frames with `edit`; the round must fail with what `check` expects. */
  async function failingRound(edit: (frame: Uint8Array) => Uint8Array | undefined, timeoutMs = 30_000): Promise<unknown> {
    const s = setup(c);
    try {
      const options = s.options(2, 4, "gpipe");
      const before = tf.memory().numTensors;
      const error = await runLocalPipeline({ ...options, tamper: (from, direction, frame) => (from === 0 && direction === "forward" ? edit(frame) : frame), timeoutMs }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(tf.memory().numTensors, "tensors left behind by the failed round").toBe(before);
      return error;
    } finally {
      s.dispose();
    }
  }
  const reencode = (bytes: Uint8Array, change: (frame: ReturnType<typeof decodeActivationFrame>) => Parameters<typeof encodeActivationFrame>): Uint8Array => encodeActivationFrame(...change(decodeActivationFrame(bytes)));

  it("of the wrong shape", async () => {
    const error = await failingRound((bytes) => reencode(bytes, (f) => [{ ...f, shape: [f.shape[0]! + 1, ...f.shape.slice(1)] }, f.offset, f.values]));
    expect(error).toBeInstanceOf(ActivationViolation);
    expect((error as ActivationViolation).sender).toBe("stage-0");
    expect((error as Error).message).toMatch(/shape \[4, 16\], expected \[3, 16\]/);
  });

  it("of a micro-batch the round does not have", async () => {
    const error = await failingRound((bytes) => reencode(bytes, (f) => [{ ...f, micro: f.micro + 4 }, f.offset, f.values]));
    expect(error).toBeInstanceOf(ActivationViolation);
    expect((error as Error).message).toMatch(/the round has 4 micro-batches/);
  });

  it("holding a NaN", async () => {
    const error = await failingRound((bytes) => {
      const copy = bytes.slice();
      new DataView(copy.buffer).setFloat32(32 + 4 * 5, Number.NaN, true);
      return copy;
    });
    expect(error).toBeInstanceOf(ActivationViolation);
    expect((error as Error).message).toMatch(/element 5 is NaN/);
  });

  it("and a send that fails fails the round at once with its own error, not a timeout blaming the neighbour", async () => {
    const s = setup(c);
    try {
      const options = s.options(2, 4, "gpipe");
      const before = tf.memory().numTensors;
      const started = performance.now();
      const error = await runLocalPipeline({ ...options, failSend: (from, direction) => (from === 0 && direction === "forward" ? new Error("link to stage-1 lost") : undefined) }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((error as Error).message).toBe("link to stage-1 lost");
      // The activation timeout is 30 s: failing at once means the send's failure ended the waits.
      expect(performance.now() - started).toBeLessThan(5_000);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      s.dispose();
    }
  });

  it("and a neighbour that goes silent fails the round by its named timeout", async () => {
    const error = await failingRound(() => undefined, 300);
    expect(error).toBeInstanceOf(PipelineTimeout);
    expect((error as PipelineTimeout).peer).toBe("stage-0");
    expect((error as Error).message).toMatch(/no forward activations of micro-batch 0 from stage-0 within 300 ms/);
  });
});
