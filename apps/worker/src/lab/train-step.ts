// One tab, no network: our training step (gradient read back, deterministic JS optimizer, weights
// written back) against plain TF.js training of the same model, batch and backend.
import * as tf from "@tensorflow/tfjs";
import { parseJob } from "@crowdtrain/protocol";
import {
  batchTensors,
  buildModel,
  createOptimizer,
  meanCrossEntropy,
  readGradient,
  readWeightsAsync,
  recordGradient,
  writeWeights,
} from "@crowdtrain/training";
import { chooseBackend } from "@crowdtrain/training/browser";
import type { StepBenchReport } from "../lab-api.ts";
import { fetchTrainSplit } from "../trainer/dataset-http.ts";

const DATASET_URL = "/data/mnist";

export async function trainStepBench(args: { backend: string; hidden: number[]; batch: number; steps: number; warmup: number }): Promise<StepBenchReport> {
  const choice = await chooseBackend([args.backend]);
  const { manifest, train } = await fetchTrainSplit(DATASET_URL);
  const job = parseJob({ name: "bench", dataset: "mnist", model: { kind: "mlp", hidden: args.hidden }, optimizer: { kind: "adam", learningRate: 0.001 }, batchSize: args.batch, rounds: 1 });
  const ours = buildModel(job.model, manifest.inputShape, manifest.classes, 1);
  const plain = buildModel(job.model, manifest.inputShape, manifest.classes, 1);
  // Async: a synchronous read-back on the page breaks WebGPU here (the next mapAsync fails).
  const weights = await readWeightsAsync(ours);
  const optimizer = createOptimizer(job.optimizer, weights.length);
  const plainOptimizer = tf.train.adam(0.001);
  const lease = (step: number): number[] => Array.from({ length: args.batch }, (_, k) => (step * args.batch + k) % train.count);

  const ourStep = async (step: number): Promise<number> => {
    const started = performance.now();
    const { xs, ys } = batchTensors(train, lease(step), manifest.inputShape, manifest.classes);
    const { gradient } = await readGradient(recordGradient(ours, xs, ys));
    xs.dispose();
    ys.dispose();
    optimizer.step(weights, gradient);
    writeWeights(ours, weights);
    return performance.now() - started;
  };
  const plainStep = async (step: number): Promise<number> => {
    const started = performance.now();
    const { xs, ys } = batchTensors(train, lease(step), manifest.inputShape, manifest.classes);
    const loss = plainOptimizer.minimize(() => meanCrossEntropy(ys, plain.apply(xs, { training: true }) as tf.Tensor), true);
    // Reading the loss is plain TF.js's sync point, as model.fit does every batch.
    await loss?.data();
    loss?.dispose();
    xs.dispose();
    ys.dispose();
    return performance.now() - started;
  };

  const oursMs: number[] = [];
  const plainMs: number[] = [];
  // Alternate the two so drift in the machine's load hits both alike.
  for (let step = 0; step < args.warmup + args.steps; step++) {
    const a = await ourStep(step);
    const b = await plainStep(step);
    if (step >= args.warmup) {
      oursMs.push(a);
      plainMs.push(b);
    }
  }
  ours.dispose();
  plain.dispose();
  plainOptimizer.dispose();
  return { backend: choice.backend, weights: weights.length, oursMs, plainMs };
}
