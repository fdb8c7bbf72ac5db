import type { PipelinePlan, ScheduleKind } from "@crowdtrain/protocol";
import type { LayerInfo } from "@crowdtrain/training";
import { PartitionError, stageMemoryBytes, tryPartition, type StageCut, type StageMemoryModel } from "./partition.ts";

/**
 * The plan of a pipeline round from the ready members: R replicas × K stages, the model's cut, and
 * who holds what. Pure: the coordinator calls it when it opens a round.
 *
 * - R = ⌊N / K⌋ replicas, each of the job's K stages. With fewer than K members, fewer stages if the
 *   model still fits the members' memory (a pipeline of 3 when one of 4 tabs is gone), else no plan.
 * - The members with the most memory are chosen; the cut must fit the smallest budget among them
 *   (and the job's tabMemoryMiB), so any chosen member can hold any stage, which lets a replacement
 *   take over a lost stage without a new cut.
 * - The stages needing the most memory go to the members with the most; replicas are filled in
 *   turn, so each stage's members (its all-reduce ring) have similar budgets.
 * - Members beyond R × K wait as spares; they join when the next plan is formed.
 */
export interface PipelineMember {
  readonly id: string;
  /** Bytes the member lends (reported at join or set by its volunteer); undefined = no limit known. */
  readonly memoryBytes?: number;
}

export interface PipelinePlanRequest {
  readonly members: readonly PipelineMember[];
  readonly layers: readonly LayerInfo[];
  readonly stages: number;
  readonly microBatches: number;
  readonly schedule: ScheduleKind;
  /** The round's global batch (split evenly over the replicas, then into micro-batches). */
  readonly batchSize: number;
  /** Float32 buffers per weight of the optimizer (sgd 1, adam 2). */
  readonly optimizerBuffers: number;
  /** The job's per-tab budget (tabMemoryMiB in bytes), if any. */
  readonly tabMemoryBytes?: number;
  /** Measured per-layer costs, when known; FLOPs otherwise. */
  readonly costs?: readonly number[];
}

export type PipelinePlanResult =
  | { readonly ok: true; readonly plan: PipelinePlan; readonly cuts: readonly StageCut[]; readonly spares: readonly string[] }
  | { readonly ok: false; readonly reason: string };

export function buildPipelinePlan(request: PipelinePlanRequest): PipelinePlanResult {
  const { members, stages } = request;
  if (members.length === 0) return { ok: false, reason: "no members" };
  const byMemory = [...members].sort((a, b) => (b.memoryBytes ?? Infinity) - (a.memoryBytes ?? Infinity) || (a.id < b.id ? -1 : 1));
  let failure: string | undefined;
  // Fewer members than stages: the most stages the members can hold whose cut still fits them.
  for (let k = Math.min(stages, members.length); k >= 1; k--) {
    const replicas = Math.floor(members.length / k);
    const chosen = byMemory.slice(0, replicas * k);
    const budget = Math.min(request.tabMemoryBytes ?? Infinity, ...chosen.map((m) => m.memoryBytes ?? Infinity));
    const replicaRows = Math.floor(request.batchSize / replicas);
    if (replicaRows < request.microBatches) return { ok: false, reason: `a batch of ${request.batchSize} over ${replicas} replicas leaves fewer rows than ${request.microBatches} micro-batches` };
    const memory: StageMemoryModel = { optimizerBuffers: request.optimizerBuffers, microRows: Math.ceil(replicaRows / request.microBatches), micros: request.microBatches, schedule: request.schedule };
    const cuts = tryPartition({ layers: request.layers, stages: k, memory, budgetBytes: budget, ...(request.costs === undefined ? {} : { costs: request.costs }) });
    if (cuts instanceof PartitionError) {
      // The reason reported is the first one: why the job's own K (or the most the members allow) failed.
      failure ??= cuts.message;
      continue;
    }
    const grid: string[][] = Array.from({ length: replicas }, () => new Array<string>(k));
    const stageOrder = cuts.map((cut, stage) => ({ stage, bytes: cut.memoryBytes })).sort((a, b) => b.bytes - a.bytes || a.stage - b.stage);
    let next = 0;
    for (const { stage } of stageOrder) {
      for (let r = 0; r < replicas; r++) (grid[r] as string[])[stage] = (chosen[next++] as PipelineMember).id;
    }
    return {
      ok: true,
      plan: { kind: "pipeline", stages: cuts.map(({ from, to }) => ({ from, to })), replicas: grid, microBatches: request.microBatches, schedule: request.schedule },
      cuts,
      spares: byMemory.slice(replicas * k).map((m) => m.id),
    };
  }
  return { ok: false, reason: failure ?? "no members" };
}

type OneTabRequest = Pick<PipelinePlanRequest, "layers" | "batchSize" | "optimizerBuffers">;

/** One tab trains the whole model on its whole batch in one pass (data parallelism does not cut micro-batches). */
// The schedule does not matter for one stage: it is the last, which stashes one micro-batch.
const oneTabMemory = (request: OneTabRequest): StageMemoryModel => ({ optimizerBuffers: request.optimizerBuffers, microRows: request.batchSize, micros: 1, schedule: "gpipe" });

/** Bytes one tab needs to train the whole model on the whole batch (stageMemoryBytes of the one stage). */
export function oneTabBytes(request: OneTabRequest): number {
  return stageMemoryBytes(request.layers, 0, request.layers.length, oneTabMemory(request));
}

/** Refuses, with the reason in words, a job that one tab cannot hold (stages 1 over a budget). */
export function checkFitsOneTab(request: OneTabRequest, tabMemoryBytes: number): string | undefined {
  const memory = oneTabMemory(request);
  const cuts = tryPartition({ layers: request.layers, stages: 1, memory, budgetBytes: tabMemoryBytes });
  return cuts instanceof PartitionError ? `the whole model does not fit one tab: ${cuts.message}; give it parallelism.stages above 1` : undefined;
}
