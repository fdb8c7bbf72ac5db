import { OPTIMIZER_BUFFERS, combineLayerHashes, modelLayers, stateHasher, type DatasetManifest, type StateHasher } from "@crowdtrain/training";
import { buildPipelinePlan, checkFitsOneTab, oneTabBytes, type PipelinePlanRequest } from "@crowdtrain/pipeline";
import type { PipelineCoordination } from "@crowdtrain/coordination";
import { roundSamples, type Job } from "@crowdtrain/protocol";
import { nodeSha256 } from "@crowdtrain/training/node";

/**
 * Why this server cannot train the job's `parallelism`, in words, or undefined when it can.
 *
 * - A job cut into stages (stages above 1) with a per-tab budget is refused when no cut of its model
 *   into that many stages fits the budget (a stage's weights, gradient, optimizer state and stashed
 *   activations).
 * - A one-stage job with a per-tab budget (tabMemoryMiB) is refused when the whole model, its
 *   gradient, optimizer state and a batch's activations do not fit that budget: no tab could train it.
 */
export function parallelismRefusal(job: Job, manifest: DatasetManifest): string | undefined {
  const { parallelism } = job;
  if (parallelism.tabMemoryMiB === undefined) return undefined;
  if (parallelism.stages > 1) {
    const planned = buildPipelinePlan(planRequest(job, manifest, fullPlanMembers(job)));
    return planned.ok && planned.plan.stages.length === parallelism.stages ? undefined : `no cut of the model into ${parallelism.stages} stages fits a tab: ${planned.ok ? "fewer stages fit" : planned.reason}`;
  }
  return checkFitsOneTab(oneTabRequest(job, manifest), parallelism.tabMemoryMiB * 2 ** 20);
}

/**
 * Bytes a trainer needs for this job: for one stage, the whole model, its gradient and optimizer
 * state, and the whole batch's activations (a tab alone computes the whole batch); for a pipeline
 * job, the most any stage of the balanced cut needs. A volunteer who lends less (`?memoryMiB=`) is
 * told so at hello rather than running out of memory mid-round.
 */
export function trainerNeedsBytes(job: Job, manifest: DatasetManifest): number {
  if (job.parallelism.stages === 1) return oneTabBytes(oneTabRequest(job, manifest));
  const planned = buildPipelinePlan({ ...planRequest(job, manifest, fullPlanMembers(job)), tabMemoryBytes: undefined });
  return planned.ok ? Math.max(...planned.cuts.map((cut) => cut.memoryBytes)) : 0;
}

/**
 * A pipeline job's rounds for the coordinator: the plan of R replicas × K stages from the ready
 * members and their memory (@crowdtrain/pipeline's buildPipelinePlan, which balances the stages by
 * the layers' FLOPs), and the layer hashes' combination.
 */
export function pipelineCoordination(job: Job, manifest: DatasetManifest): PipelineCoordination {
  // The model's layers are built once; each round only the members change.
  const request = planRequest(job, manifest, []);
  return {
    plan: (members) => {
      const planned = buildPipelinePlan({ ...request, members });
      return planned.ok ? { ok: true, plan: planned.plan } : planned;
    },
    combine: combineLayerHashes,
  };
}

/**
 * What the server needs of a pipeline stage's part of the state, the layers [from, to): its weight
 * count and its hasher. The model's layers are built once here, not at every upload.
 */
export function stageParts(job: Job, manifest: DatasetManifest): (from: number, to: number) => { weights: number; hashOf: StateHasher } {
  const params = modelLayers(job.model, manifest.inputShape, manifest.classes).map((layer) => layer.params);
  return (from, to) => {
    const stage = params.slice(from, to);
    return { weights: stage.reduce((sum, n) => sum + n, 0), hashOf: stateHasher(job.parallelism.stages, stage, nodeSha256) };
  };
}

/** K members of unknown memory: the job's own budget alone bounds the cut. */
const fullPlanMembers = (job: Job) => Array.from({ length: job.parallelism.stages }, (_, k) => ({ id: `stage-${k}` }));

function planRequest(job: Job, manifest: DatasetManifest, members: PipelinePlanRequest["members"]): PipelinePlanRequest {
  const { stages, microBatches, schedule, tabMemoryMiB } = job.parallelism;
  return {
    members,
    layers: modelLayers(job.model, manifest.inputShape, manifest.classes),
    stages,
    microBatches,
    schedule,
    batchSize: roundSamples(job),
    optimizerBuffers: OPTIMIZER_BUFFERS[job.optimizer.kind],
    ...(tabMemoryMiB === undefined ? {} : { tabMemoryBytes: tabMemoryMiB * 2 ** 20 }),
  };
}

const oneTabRequest = (job: Job, manifest: DatasetManifest) => ({
  layers: modelLayers(job.model, manifest.inputShape, manifest.classes),
  batchSize: job.batchSize,
  optimizerBuffers: OPTIMIZER_BUFFERS[job.optimizer.kind],
});
