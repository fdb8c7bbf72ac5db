/**
 * Times one training step on the TF.js CPU backend in Node: MLP 784-128-10, batch 96, Adam, real
 * MNIST shards. Our step (computeGradient + JS optimizer + writeWeights) against plain TF.js
 * (optimizer.minimize on an identical model), interleaved step by step so that load from other
 * processes hits both alike; medians reported. Usage: npx tsx packages/training/bench/step.ts [steps]
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { ModelSpec } from "@crowdtrain/protocol";
import { batchTensors, buildModel, computeGradient, createOptimizer, hashState, meanCrossEntropy, readWeights, writeWeights } from "../src/index.ts";
import { buildMnistDataset, loadSplitFromDir } from "../src/node/index.ts";

const steps = Number(process.argv[2] ?? 60);
const BATCH = 96;
const WARMUP = 5;
tf.enableProdMode(); // no debug checks, no "install tfjs-node" banner
await tf.setBackend("cpu");
const dir = await mkdtemp(join(tmpdir(), "crowdtrain-bench-"));
const { manifest } = await buildMnistDataset(dir);
const train = await loadSplitFromDir(dir, "train", manifest);
await rm(dir, { recursive: true, force: true });
const spec: ModelSpec = { kind: "mlp", hidden: [128], activation: "relu" };

const model = buildModel(spec, manifest.inputShape, manifest.classes, 1);
const weights = readWeights(model);
const optimizer = createOptimizer({ kind: "adam", learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, weights.length);
const plain = buildModel(spec, manifest.inputShape, manifest.classes, 1);
const adam = tf.train.adam(1e-3, 0.9, 0.999, 1e-7);
const plainVars = plain.trainableWeights.map((w) => w.read() as tf.Variable);

const samples: Record<"batch" | "gradient" | "optimizer" | "write" | "hash" | "ours" | "plain", number[]> = {
  batch: [], gradient: [], optimizer: [], write: [], hash: [], ours: [], plain: [],
};
for (let step = 0; step < steps + WARMUP; step++) {
  const record = step >= WARMUP;
  const indices = Array.from({ length: BATCH }, (_, i) => (step * BATCH + i) % train.count);
  let t = performance.now();
  const lap = (key: keyof typeof samples): void => {
    const now = performance.now();
    if (record) samples[key].push(now - t);
    t = now;
  };
  const { xs, ys } = batchTensors(train, indices, manifest.inputShape, manifest.classes);
  lap("batch");
  const start = t;
  const { gradient } = computeGradient(model, xs, ys);
  lap("gradient");
  optimizer.step(weights, gradient);
  lap("optimizer");
  writeWeights(model, weights);
  lap("write");
  if (record) samples.ours.push(t - start);
  hashState(weights, optimizer.state());
  lap("hash");

  t = performance.now();
  const loss = adam.minimize(() => meanCrossEntropy(ys, plain.apply(xs, { training: true }) as tf.Tensor), true, plainVars);
  loss?.dataSync(); // one read-back, as a training loop that logs its loss does
  lap("plain");
  tf.dispose([xs, ys, loss as tf.Tensor]);
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
};
const ms = (key: keyof typeof samples): string => median(samples[key]).toFixed(2);
console.log(`MLP 784-128-10, batch ${BATCH}, ${weights.length} weights, TF.js CPU backend, median of ${steps} steps after ${WARMUP} warm-up`);
console.log(`  batchTensors ${ms("batch")} | computeGradient ${ms("gradient")} | JS Adam ${ms("optimizer")} | writeWeights ${ms("write")} | hash ${ms("hash")} ms`);
console.log(`  ours (gradient + optimizer + write) ${ms("ours")} ms, plain TF.js adam.minimize ${ms("plain")} ms, ratio ${(median(samples.ours) / median(samples.plain)).toFixed(2)}`);
