import * as tf from "@tensorflow/tfjs";
import type { ModelSpec } from "@crowdtrain/protocol";
import { beforeAll, describe, expect, it } from "vitest";
import { buildModel, computeGradient, computeGradientAsync, readWeights, weightCount, writeWeights } from "../src/index.ts";
import { seededFloats, useCpu } from "./helpers.ts";

beforeAll(useCpu);

// Tiny MLP 3 -> 4 (tanh) -> 3 (softmax), batch 5, so a float64 reference in plain JS is easy.
const IN = 3;
const HIDDEN = 4;
const OUT = 3;
const BATCH = 5;
const inputs = seededFloats(BATCH * IN, 11);
const labels = [0, 2, 1, 2, 0];

/** Mean cross-entropy of the tiny MLP, in float64, from flat weights [W1 (3x4), b1, W2 (4x3), b2]. */
function referenceLoss(w: Float64Array): number {
  const b1 = IN * HIDDEN;
  const w2 = b1 + HIDDEN;
  const b2 = w2 + HIDDEN * OUT;
  let total = 0;
  for (let n = 0; n < BATCH; n++) {
    const h = Array.from({ length: HIDDEN }, (_, j) => {
      let z = w[b1 + j] as number;
      for (let i = 0; i < IN; i++) z += (inputs[n * IN + i] as number) * (w[i * HIDDEN + j] as number);
      return Math.tanh(z);
    });
    const logits = Array.from({ length: OUT }, (_, k) => {
      let z = w[b2 + k] as number;
      for (let j = 0; j < HIDDEN; j++) z += (h[j] as number) * (w[w2 + j * OUT + k] as number);
      return z;
    });
    const max = Math.max(...logits);
    const logSum = Math.log(logits.reduce((s, z) => s + Math.exp(z - max), 0)) + max;
    total += logSum - (logits[labels[n] as number] as number);
  }
  return total / BATCH;
}

function tinyBatch(): { xs: tf.Tensor; ys: tf.Tensor } {
  return { xs: tf.tensor2d(inputs, [BATCH, IN]), ys: tf.oneHot(labels, OUT).toFloat() };
}

describe("computeGradient", () => {
  it("matches central finite differences of a float64 reference", () => {
    const model = buildModel({ kind: "mlp", hidden: [HIDDEN], activation: "tanh" }, [IN], OUT, 5);
    const weights = readWeights(model);
    expect(weights.length).toBe(IN * HIDDEN + HIDDEN + HIDDEN * OUT + OUT);
    const { xs, ys } = tinyBatch();
    const { gradient, loss, samples } = computeGradient(model, xs, ys);
    tf.dispose([xs, ys]);

    const w = Float64Array.from(weights);
    expect(samples).toBe(BATCH);
    expect(loss).toBeCloseTo(referenceLoss(w), 5);
    const h = 1e-6;
    for (let i = 0; i < w.length; i++) {
      const saved = w[i] as number;
      w[i] = saved + h;
      const up = referenceLoss(w);
      w[i] = saved - h;
      const down = referenceLoss(w);
      w[i] = saved;
      const numeric = (up - down) / (2 * h);
      expect(Math.abs((gradient[i] as number) - numeric), `weight ${i}`).toBeLessThan(1e-5 + 1e-4 * Math.abs(numeric));
    }
    model.dispose();
  });

  it("leaks no tensor, sync or async, MLP or CNN, and the two agree", async () => {
    const specs: ModelSpec[] = [
      { kind: "mlp", hidden: [32], activation: "relu" },
      { kind: "cnn", filters: [4], kernelSize: 3, dense: 8 },
    ];
    for (const spec of specs) {
      const model = buildModel(spec, [28, 28, 1], 10, 1);
      const xs = tf.tensor4d(seededFloats(8 * 784, 3, 0, 1), [8, 28, 28, 1]);
      const ys = tf.oneHot([0, 1, 2, 3, 4, 5, 6, 7], 10).toFloat();
      computeGradient(model, xs, ys); // warm-up: first calls may cache kernels
      const before = tf.memory().numTensors;
      const sync = computeGradient(model, xs, ys);
      const async = await computeGradientAsync(model, xs, ys);
      expect(tf.memory().numTensors).toBe(before);
      expect(sync.gradient.length).toBe(weightCount(model));
      expect(sync.gradient.buffer.byteLength).toBe(sync.gradient.length * 4);
      expect(sync.gradient.every(Number.isFinite)).toBe(true);
      expect(async.gradient).toEqual(sync.gradient);
      expect(async.loss).toBe(sync.loss);
      tf.dispose([xs, ys]);
      model.dispose();
    }
  });

  it("does not change the weights and rejects mismatched batches without leaking", () => {
    const model = buildModel({ kind: "mlp", hidden: [HIDDEN], activation: "tanh" }, [IN], OUT, 5);
    const weights = readWeights(model);
    const { xs, ys } = tinyBatch();
    const before = tf.memory().numTensors;
    computeGradient(model, xs, ys);
    expect(readWeights(model)).toEqual(weights);
    const short = ys.slice(0, 2);
    expect(() => computeGradient(model, xs, short)).toThrow("5 inputs but 2 labels");
    short.dispose();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([xs, ys]);
    writeWeights(model, weights);
    model.dispose();
  });
});
