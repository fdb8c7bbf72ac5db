import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  batchTensors,
  buildModel,
  computeGradient,
  createOptimizer,
  evaluate,
  hashState,
  readWeights,
  writeWeights,
  type Dataset,
  type DatasetManifest,
} from "../src/index.ts";
import { buildMnistDataset, loadSplitFromDir } from "../src/node/index.ts";
import { useCpu } from "./helpers.ts";

let root = "";
let manifest: DatasetManifest;
let train: Dataset;
let test: Dataset;

beforeAll(async () => {
  await useCpu();
  root = await mkdtemp(join(tmpdir(), "crowdtrain-train-"));
  ({ manifest } = await buildMnistDataset(root));
  [train, test] = await Promise.all([loadSplitFromDir(root, "train", manifest), loadSplitFromDir(root, "test", manifest)]);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** The worker's round loop on one peer: gradient on the device, optimizer in JS, weights written back. */
function trainSteps(steps: number, batch: number): { weights: Float32Array; losses: number[]; model: tf.LayersModel } {
  const model = buildModel({ kind: "mlp", hidden: [64], activation: "relu" }, manifest.inputShape, manifest.classes, 1);
  const weights = readWeights(model);
  const optimizer = createOptimizer({ kind: "adam", learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, weights.length);
  const losses: number[] = [];
  for (let step = 0; step < steps; step++) {
    // Consecutive samples: the built dataset is already shuffled.
    const indices = Array.from({ length: batch }, (_, i) => (step * batch + i) % train.count);
    const { xs, ys } = batchTensors(train, indices, manifest.inputShape, manifest.classes);
    const { gradient, loss } = computeGradient(model, xs, ys);
    tf.dispose([xs, ys]);
    optimizer.step(weights, gradient);
    writeWeights(model, weights);
    losses.push(loss);
  }
  return { weights, losses, model };
}

describe("training MNIST end to end (CPU backend)", () => {
  it("reaches >= 80% test accuracy in 60 Adam steps of batch 64, leak-free and reproducibly", async () => {
    const before = tf.memory().numTensors;
    const started = performance.now();
    const run = trainSteps(60, 64);
    const trainMs = performance.now() - started;
    const result = await evaluate(run.model, test, 500);
    console.log(
      `60 steps in ${trainMs.toFixed(0)} ms; loss ${run.losses[0]?.toFixed(3)} -> ${run.losses.at(-1)?.toFixed(3)}; ` +
        `test accuracy ${(result.accuracy * 100).toFixed(1)}%, loss ${result.loss.toFixed(3)}`,
    );
    expect(result.samples).toBe(2000);
    expect(result.accuracy).toBeGreaterThanOrEqual(0.8);
    expect(run.model.trainableWeights.length).toBe(4);
    const weightTensors = run.model.trainableWeights.length;
    expect(tf.memory().numTensors).toBe(before + weightTensors);

    // Same seed, same data, same steps: the same bits, which is what the coordinator's hash check relies on.
    const again = trainSteps(60, 64);
    const none = { kind: "sgd", step: 0, scalars: [], buffers: [] } as const;
    expect(hashState(again.weights, { ...none, scalars: [], buffers: [] })).toBe(hashState(run.weights, { ...none, scalars: [], buffers: [] }));
    run.model.dispose();
    again.model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("evaluate agrees with model.evaluate and leaks nothing", async () => {
    const model = buildModel({ kind: "mlp", hidden: [16], activation: "relu" }, manifest.inputShape, manifest.classes, 3);
    const before = tf.memory().numTensors;
    const ours = await evaluate(model, test, 300);
    expect(tf.memory().numTensors).toBe(before);
    model.compile({ optimizer: "sgd", loss: "categoricalCrossentropy", metrics: ["accuracy"] });
    const indices = Array.from({ length: test.count }, (_, i) => i);
    const { xs, ys } = batchTensors(test, indices, manifest.inputShape, manifest.classes);
    const [loss, accuracy] = (model.evaluate(xs, ys, { batchSize: 300 }) as tf.Scalar[]).map((t) => {
      const value = t.dataSync()[0] as number;
      t.dispose();
      return value;
    });
    tf.dispose([xs, ys]);
    expect(ours.loss).toBeCloseTo(loss as number, 4);
    expect(ours.accuracy).toBeCloseTo(accuracy as number, 6);
    model.dispose();
  });
});
