import * as tf from "@tensorflow/tfjs";
import type { OptimizerSpec } from "@crowdtrain/protocol";
import { beforeAll, describe, expect, it } from "vitest";
import { batchTensors, buildModel, innerBatches, meanCrossEntropy, readWeights, runInnerSteps, runInnerStepsPaced, runInnerStepsSync, tfOptimizer, type Dataset } from "../src/index.ts";
import { seededFloats, useCpu } from "./helpers.ts";

beforeAll(useCpu);

const manifest = { inputShape: [6], classes: 3 };
const COUNT = 40;
const dataset: Dataset = {
  count: COUNT,
  featureBytes: 6,
  featureScale: 1 / 255,
  features: Uint8Array.from(seededFloats(COUNT * 6, 5, 0, 255), Math.floor),
  labels: Uint8Array.from({ length: COUNT }, (_, k) => k % 3),
};
const adam: OptimizerSpec = { kind: "adam", learningRate: 0.05, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
const lease = Array.from({ length: 23 }, (_, k) => (k * 7) % COUNT);

const model = () => buildModel({ kind: "mlp", hidden: [5], activation: "relu" }, manifest.inputShape, manifest.classes, 4);

describe("innerBatches", () => {
  it("cuts a lease into consecutive batches whose sizes differ by at most one, never empty", () => {
    expect(innerBatches([1, 2, 3, 4, 5, 6, 7], 3)).toEqual([[1, 2, 3], [4, 5], [6, 7]]);
    expect(innerBatches([1, 2], 5)).toEqual([[1], [2]]);
    expect(innerBatches([], 4)).toEqual([]);
    expect(innerBatches(lease, 1)).toEqual([lease]);
    expect(innerBatches(lease, 8).flat()).toEqual(lease);
    expect(() => innerBatches(lease, 0)).toThrow(RangeError);
  });
});

describe("runInnerSteps", () => {
  it("is TF.js's own optimizer loop over the lease's batches, contributing start - end", () => {
    const ours = model();
    const start = readWeights(ours);
    const result = runInnerStepsSync({ model: ours, optimizer: adam, train: dataset, manifest, start, lease, steps: 4 });

    // Reference: the same loop written out with TF.js.
    const reference = model();
    const optimizer = tfOptimizer(adam);
    let lossSum = 0;
    for (const batch of innerBatches(lease, 4)) {
      const { xs, ys } = batchTensors(dataset, batch, manifest.inputShape, manifest.classes);
      const loss = optimizer.minimize(() => meanCrossEntropy(ys, reference.apply(xs, { training: true }) as tf.Tensor), true) as tf.Scalar;
      lossSum += (loss.dataSync()[0] as number) * batch.length;
      tf.dispose([xs, ys, loss]);
    }
    optimizer.dispose();
    const end = readWeights(reference);
    expect(Array.from(result.pseudoGradient)).toEqual(Array.from(start, (w, k) => Math.fround(w - (end[k] as number))));
    expect(result.samples).toBe(lease.length);
    expect(result.loss).toBeCloseTo(lossSum / lease.length, 5);
    expect(result.pseudoGradient.some((d) => d !== 0)).toBe(true);
    ours.dispose();
    reference.dispose();
  });

  it("starts from the given weights whatever the model held, reproducibly, and leaks no tensor (sync and async agree)", async () => {
    const m = model();
    const start = readWeights(m);
    const input = { model: m, optimizer: { kind: "sgd", learningRate: 0.1, momentum: 0.9, nesterov: true } as OptimizerSpec, train: dataset, manifest, start, lease, steps: 3 };
    runInnerStepsSync(input); // warm-up: kernels may cache tensors on first use
    const before = tf.memory().numTensors;
    const first = runInnerStepsSync(input);
    const second = await runInnerSteps(input);
    expect(tf.memory().numTensors).toBe(before);
    expect(second.pseudoGradient).toEqual(first.pseudoGradient);
    expect(second.loss).toBe(first.loss);
    expect(() => runInnerStepsSync({ ...input, lease: [] })).toThrow(/empty lease/);
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });

  it("paced, hands the thread back after every step and computes the same; a pause that throws stops it and frees everything", async () => {
    const m = model();
    const start = readWeights(m);
    const input = { model: m, optimizer: adam, train: dataset, manifest, start, lease, steps: 5 };
    const whole = runInnerStepsSync(input);
    const before = tf.memory().numTensors;
    // Timers that fire while it runs: only possible if it really gives the thread back in between.
    let fired = 0;
    const ticker = setInterval(() => fired++, 0);
    let pauses = 0;
    const paced = await runInnerStepsPaced(input, async () => {
      pauses++;
      await new Promise((done) => setTimeout(done, 2));
    });
    clearInterval(ticker);
    expect(pauses).toBe(5);
    expect(fired).toBeGreaterThan(0);
    expect(paced.pseudoGradient).toEqual(whole.pseudoGradient);
    expect(paced.loss).toBe(whole.loss);
    expect(tf.memory().numTensors).toBe(before);

    let stepsRun = 0;
    const stopped = runInnerStepsPaced(input, async () => {
      if (++stepsRun === 2) throw new Error("withdrawn");
    });
    await expect(stopped).rejects.toThrow("withdrawn");
    expect(stepsRun).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});
