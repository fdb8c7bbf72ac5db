import { OPTIMIZER_BUFFERS, modelLayers, type DatasetManifest } from "@crowdtrain/training";
import { checkFitsOneTab, oneTabBytes } from "@crowdtrain/pipeline";
import type { Job } from "@crowdtrain/protocol";

/**
 * Why this server cannot train the job's `parallelism`, in words, or undefined when it can.
 *
 * - A job cut into stages (stages above 1) is refused: @crowdtrain/pipeline computes a stage's round,
 *   but the coordinator does not yet open pipeline rounds, and training such a job as data
 *   parallelism instead would ignore what the operator asked for.
 * - A one-stage job with a per-tab budget (tabMemoryMiB) is refused when the whole model, its
 *   gradient, optimizer state and a batch's activations do not fit that budget: no tab could train it.
 */
export function parallelismRefusal(job: Job, manifest: DatasetManifest): string | undefined {
  const { parallelism } = job;
  if (parallelism.stages > 1) {
    return `parallelism.stages is ${parallelism.stages}, but this server does not run pipeline rounds yet (only one stage: each tab holds the whole model); set parallelism.stages to 1`;
  }
  if (parallelism.tabMemoryMiB === undefined) return undefined;
  return checkFitsOneTab(oneTabRequest(job, manifest), parallelism.tabMemoryMiB * 2 ** 20);
}

/**
 * Bytes a trainer needs for this one-stage job: the whole model, its gradient and optimizer state,
 * and the whole batch's activations (a tab alone computes the whole batch). A volunteer who lends
 * less (`?memoryMiB=`) is told so at hello rather than running out of memory mid-round.
 */
export function trainerNeedsBytes(job: Job, manifest: DatasetManifest): number {
  return oneTabBytes(oneTabRequest(job, manifest));
}

const oneTabRequest = (job: Job, manifest: DatasetManifest) => ({
  layers: modelLayers(job.model, manifest.inputShape, manifest.classes),
  batchSize: job.batchSize,
  optimizerBuffers: OPTIMIZER_BUFFERS[job.optimizer.kind],
});
