// The baseline a distributed run must beat: plain TF.js training of the job's model in one tab
// (optimizer.minimize on the device, no read-back of gradients, no network), evaluated on the test
// split every `evalEverySteps` steps, until it reaches the target accuracy or runs out of time.
import * as tf from "@tensorflow/tfjs";
import { mulberry32, parseJob, type OptimizerSpec } from "@crowdtrain/protocol";
import { batchTensors, buildModel, evaluate, loadSplit, meanCrossEntropy, type Dataset } from "@crowdtrain/training";
import { chooseBackend } from "@crowdtrain/training/browser";
import type { PlainTrainArgs, PlainTrainReport } from "../lab-api.ts";
import { fetchTrainSplit } from "../trainer/dataset-http.ts";

const DATASET_URL = "/data/mnist";
/** The server's evaluation batch (apps/server/src/training/evaluator.ts). */
const EVAL_BATCH = 500;
/** One test shard over loopback; the server has it at hand. */
const TEST_FETCH_TIMEOUT_MS = 60_000;

async function fetchTestSplit(manifest: Awaited<ReturnType<typeof fetchTrainSplit>>["manifest"]): Promise<Dataset> {
  return loadSplit(manifest, "test", async (file) => {
    const response = await fetch(`${DATASET_URL}/${file}`, { signal: AbortSignal.timeout(TEST_FETCH_TIMEOUT_MS) });
    if (!response.ok) throw new Error(`GET ${DATASET_URL}/${file}: ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  });
}

/** The job's optimizer as TF.js's own (the distributed run applies the same formulas in JS). */
function tfOptimizer(spec: OptimizerSpec): tf.Optimizer {
  if (spec.kind === "adam") return tf.train.adam(spec.learningRate, spec.beta1, spec.beta2, spec.epsilon);
  return spec.momentum === 0 ? tf.train.sgd(spec.learningRate) : tf.train.momentum(spec.learningRate, spec.momentum, spec.nesterov);
}

/**
 * A fresh shuffle per epoch, drawn like the coordinator's epochOrder (packages/coordination
 * permutation.ts, not imported: the worker does not depend on the coordinator).
 */
function epochOrder(count: number, seed: number, epoch: number): number[] {
  const random = mulberry32((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
  const order = Array.from({ length: count }, (_, k) => k);
  for (let k = count - 1; k > 0; k--) {
    const j = Math.floor(random() * (k + 1));
    [order[k], order[j]] = [order[j] as number, order[k] as number];
  }
  return order;
}

export async function plainTrainTo(args: PlainTrainArgs): Promise<PlainTrainReport> {
  const job = parseJob(args.job);
  const choice = await chooseBackend([args.backend]);
  const { manifest, train } = await fetchTrainSplit(DATASET_URL);
  const test = await fetchTestSplit(manifest);
  const model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
  const optimizer = tfOptimizer(job.optimizer);
  const batchesPerEpoch = Math.floor(train.count / job.batchSize);
  if (batchesPerEpoch < 1) throw new Error(`batch ${job.batchSize} is larger than the ${train.count} training samples`);
  const evals: PlainTrainReport["evals"] = [];
  let trainMs = 0;
  let evalMs = 0;
  let order: number[] = [];
  const started = performance.now();
  try {
    for (let step = 1; ; step++) {
      const epoch = Math.floor((step - 1) / batchesPerEpoch);
      const slot = (step - 1) % batchesPerEpoch;
      if (slot === 0) order = epochOrder(train.count, job.seed, epoch);
      const stepStarted = performance.now();
      const { xs, ys } = batchTensors(train, order.slice(slot * job.batchSize, (slot + 1) * job.batchSize), manifest.inputShape, manifest.classes);
      const loss = optimizer.minimize(() => meanCrossEntropy(ys, model.apply(xs, { training: true }) as tf.Tensor), true);
      // Reading the loss is plain TF.js's sync point, as model.fit does every batch.
      await loss?.data();
      loss?.dispose();
      xs.dispose();
      ys.dispose();
      trainMs += performance.now() - stepStarted;
      const timeUp = performance.now() - started >= args.maxMs;
      if (step % args.evalEverySteps !== 0 && !timeUp) continue;
      const evalStarted = performance.now();
      const { accuracy } = await evaluate(model, test, EVAL_BATCH);
      evalMs += performance.now() - evalStarted;
      evals.push({ step, accuracy, trainMs, wallMs: performance.now() - started });
      if (accuracy >= args.targetAccuracy || timeUp) break;
    }
  } finally {
    model.dispose();
    optimizer.dispose();
  }
  const last = evals.at(-1);
  const reached = last !== undefined && last.accuracy >= args.targetAccuracy ? last : undefined;
  return {
    backend: choice.backend,
    stepsToTarget: reached?.step ?? null,
    trainMsToTarget: reached?.trainMs ?? null,
    wallMsToTarget: reached?.wallMs ?? null,
    evalMs,
    finalAccuracy: last?.accuracy ?? 0,
    evals,
  };
}
