import * as tf from "@tensorflow/tfjs";
import type { OptimizerSpec } from "@crowdtrain/protocol";
import { batchTensors, type Dataset, type DatasetManifest } from "./dataset.ts";
import { meanCrossEntropy } from "./gradients.ts";
import { readWeights, readWeightsAsync, writeWeights } from "./weights.ts";

/**
 * DiLoCo's inner loop (local SGD): `steps` optimizer steps on the device over one lease, then one
 * read-back of the weights. The member contributes the pseudo-gradient start - end, which the ring
 * averages and the deterministic outer optimizer applies, exactly as a gradient in a sync round.
 *
 * The inner optimizer is TF.js's own (the job's optimizer spec) and is created fresh for every call:
 * its state lives only for one round. That costs DiLoCo's carried-over Adam moments, and buys two
 * things: a member that joins, rejoins or rolls back needs nothing but the committed state, and the
 * server can replay any member's round from that state alone to audit it (apps/server auditor.ts).
 */
export type InnerStepsResult = {
  /** Weights at the start minus weights after the steps, flat in trainableWeights order. */
  pseudoGradient: Float32Array;
  /** Mean training loss over the steps' samples, each measured before its step. */
  loss: number;
  samples: number;
};

export type InnerStepsInput = {
  model: tf.LayersModel;
  optimizer: OptimizerSpec;
  train: Dataset;
  manifest: Pick<DatasetManifest, "inputShape" | "classes">;
  /** The round's starting weights: written to the model first. */
  start: Float32Array;
  lease: readonly number[];
  steps: number;
};

/**
 * Cuts a lease into at most `steps` consecutive mini-batches whose sizes differ by at most one
 * (larger first). A lease shorter than `steps` gives fewer, one-sample batches: never an empty one.
 */
export function innerBatches(lease: readonly number[], steps: number): number[][] {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`inner steps must be a positive integer, got ${steps}`);
  const count = Math.min(steps, lease.length);
  const batches: number[][] = [];
  let at = 0;
  for (let k = 0; k < count; k++) {
    const size = Math.floor(lease.length / count) + (k < lease.length % count ? 1 : 0);
    batches.push(lease.slice(at, at + size));
    at += size;
  }
  return batches;
}

/** The TF.js optimizer an OptimizerSpec describes (same formulas as optimizers.ts, in float32 on the device). */
export function tfOptimizer(spec: OptimizerSpec): tf.Optimizer {
  if (spec.kind === "adam") return tf.train.adam(spec.learningRate, spec.beta1, spec.beta2, spec.epsilon);
  if (spec.momentum === 0) return tf.train.sgd(spec.learningRate);
  return tf.train.momentum(spec.learningRate, spec.momentum, spec.nesterov);
}

/** Runs the inner steps; the read-back is async (no blocking the thread on WebGPU/WebGL). */
export async function runInnerSteps(input: InnerStepsInput): Promise<InnerStepsResult> {
  const { lossSum, samples } = recordInnerSteps(input);
  try {
    const end = await readWeightsAsync(input.model);
    const loss = ((await lossSum.data()) as Float32Array)[0] as number;
    return { pseudoGradient: difference(input.start, end), loss: loss / samples, samples };
  } finally {
    lossSum.dispose();
  }
}

/** Synchronous read-back: the CPU backend (tests; the server's auditor runs runInnerStepsPaced). */
export function runInnerStepsSync(input: InnerStepsInput): InnerStepsResult {
  return readBackSync(input, recordInnerSteps(input));
}

/**
 * As runInnerStepsSync, one step at a time: awaits `pause` after each step, so
 * on the CPU backend (where every step computes synchronously) the thread is handed back between
 * steps. The server's auditor: recomputing a DiLoCo lease at H = 512 all at once held the
 * coordinator's thread for seconds, with no worker message handled meanwhile. `pause` may throw to
 * give up (an audit withdrawn): the tensors are freed and its error comes out.
 */
export async function runInnerStepsPaced(input: InnerStepsInput, pause: () => Promise<void>): Promise<InnerStepsResult> {
  const steps = innerStepsOneByOne(input);
  let step = steps.next();
  while (!step.done) {
    try {
      await pause();
    } catch (error) {
      // Into the generator at its yield: its cleanup frees the tensors, and the error comes back out.
      steps.throw(error);
    }
    step = steps.next();
  }
  return readBackSync(input, step.value);
}

function readBackSync(input: InnerStepsInput, { lossSum, samples }: Recorded): InnerStepsResult {
  try {
    const end = readWeights(input.model);
    const loss = lossSum.dataSync()[0] as number;
    return { pseudoGradient: difference(input.start, end), loss: loss / samples, samples };
  } finally {
    lossSum.dispose();
  }
}

type Recorded = { lossSum: tf.Scalar; samples: number };

/** Queues every step on the device; returns the sample-weighted loss sum, still on the device. */
function recordInnerSteps(input: InnerStepsInput): Recorded {
  const steps = innerStepsOneByOne(input);
  let step = steps.next();
  while (!step.done) step = steps.next();
  return step.value;
}

/**
 * The steps, yielding after each; returns the loss sum (the caller owns it). Stopped early (a
 * `throw` at a yield), it frees what it holds.
 */
function* innerStepsOneByOne({ model, optimizer: spec, train, manifest, start, lease, steps }: InnerStepsInput): Generator<void, Recorded, void> {
  if (lease.length === 0) throw new RangeError("inner steps: empty lease");
  writeWeights(model, start);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  const optimizer = tfOptimizer(spec);
  let lossSum: tf.Scalar | undefined = tf.scalar(0);
  try {
    for (const batch of innerBatches(lease, steps)) {
      const { xs, ys } = batchTensors(train, batch, manifest.inputShape, manifest.classes);
      try {
        const loss = optimizer.minimize(() => meanCrossEntropy(ys, model.apply(xs, { training: true }) as tf.Tensor), true, variables) as tf.Scalar;
        const next: tf.Scalar = tf.tidy(() => (lossSum as tf.Scalar).add(loss.mul(batch.length)) as tf.Scalar);
        loss.dispose();
        lossSum.dispose();
        lossSum = next;
      } finally {
        xs.dispose();
        ys.dispose();
      }
      yield;
    }
    const recorded = { lossSum, samples: lease.length };
    // Ownership passes to the caller.
    lossSum = undefined;
    return recorded;
  } finally {
    lossSum?.dispose();
    disposeOptimizer(optimizer);
  }
}

/**
 * TF.js's MomentumOptimizer.dispose() overrides SGDOptimizer's without calling it, so the learning
 * rate scalar SGD keeps leaks: one tensor per optimizer, one per round here. Dispose it too.
 */
function disposeOptimizer(optimizer: tf.Optimizer): void {
  optimizer.dispose();
  // Not instanceof: TF.js optimizers answer it by duck typing (every optimizer "is" a MomentumOptimizer).
  if (optimizer.getClassName() === "Momentum") tf.SGDOptimizer.prototype.dispose.call(optimizer);
}

/** start - end, element-wise, rounded to float32 by the store. */
function difference(start: Float32Array, end: Float32Array): Float32Array {
  if (start.length !== end.length) throw new RangeError(`inner steps: ${start.length} start weights but ${end.length} after`);
  const out = new Float32Array(start.length);
  for (let k = 0; k < out.length; k++) out[k] = (start[k] as number) - (end[k] as number);
  return out;
}
