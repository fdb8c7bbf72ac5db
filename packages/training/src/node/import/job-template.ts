import { parseJob } from "@crowdtrain/protocol";
import { featureBytesOf, type DatasetManifest } from "../../dataset.ts";

/**
 * A starting-point job for an imported dataset: a small MLP with Adam, one evaluation per epoch.
 * Operators edit it; it only has to be valid and sensible for the data's size.
 */

/** The first layer holds features x hidden weights: keep it near a million (4 MB) or below. */
const FIRST_LAYER_WEIGHTS = 1 << 20;
const HIDDEN_CHOICES = [128, 64, 32] as const;
const MIN_HIDDEN = 16;
const BATCH_SIZE = 64;
const EPOCHS = 10;
/** Evaluation runs on the server's CPU over the whole test split: not more often than this. */
const MAX_EVAL_EVERY = 50;

export function hiddenUnits(features: number): number {
  return HIDDEN_CHOICES.find((units) => units * features <= FIRST_LAYER_WEIGHTS) ?? MIN_HIDDEN;
}

/** The job as plain JSON (no defaults filled in), already checked with parseJob. */
export function jobTemplate(manifest: DatasetManifest): Record<string, unknown> {
  const batchSize = Math.min(BATCH_SIZE, manifest.train.count);
  const roundsPerEpoch = Math.ceil(manifest.train.count / batchSize);
  const job = {
    // Job names share the dataset names' rule and limit of 64 characters.
    name: `${manifest.name.slice(0, 60)}-mlp`,
    dataset: manifest.name,
    model: { kind: "mlp", hidden: [hiddenUnits(featureBytesOf(manifest.inputShape))], activation: "relu" },
    optimizer: { kind: "adam", learningRate: 0.001 },
    batchSize,
    epochs: EPOCHS,
    evalEveryRounds: Math.max(1, Math.min(MAX_EVAL_EVERY, roundsPerEpoch)),
    seed: 1,
  };
  // A template the server would refuse is a bug here, not the user's problem: fail loudly.
  parseJob(job);
  return job;
}
