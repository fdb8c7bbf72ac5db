import * as v from "valibot";

/**
 * Pipeline (model) parallelism: the job's `parallelism` field and the plan of a pipeline round.
 *
 * A job with `stages: K` > 1 splits its model at layer boundaries into K stages held by different
 * tabs; a round pushes `microBatches: M` micro-batches through each replica's stages (GPipe: all
 * forwards, then all backwards; or 1F1B, the same bubble with at most K micro-batches stashed), and
 * each stage then averages its gradients with the same stage of the other replicas (hybrid
 * parallelism: R replicas × K stages). One stage is today's data parallelism.
 */
export const MAX_PIPELINE_STAGES = 16;
export const MAX_MICRO_BATCHES = 256;

export const ScheduleKindSchema = v.picklist(["gpipe", "1f1b"]);
export type ScheduleKind = v.InferOutput<typeof ScheduleKindSchema>;

export const ParallelismSchema = v.strictObject({
  /** Stages the model is cut into (each held by its own tab); 1 = the whole model in every tab. */
  stages: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_PIPELINE_STAGES, `at most ${MAX_PIPELINE_STAGES} stages`)), 1),
  /** Micro-batches each replica's batch is cut into: the bubble is (K−1)/(M+K−1). */
  microBatches: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_MICRO_BATCHES, `at most ${MAX_MICRO_BATCHES} micro-batches`)), 1),
  schedule: v.optional(ScheduleKindSchema, "gpipe"),
  /**
   * Memory a tab lends, in MiB, when its volunteer or the operator sets one: a stage's weights,
   * gradient, optimizer state and stashed activations must fit in it, and a job whose whole model
   * does not fit one tab must have stages.
   */
  tabMemoryMiB: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1 << 20))),
});
export type Parallelism = v.InferOutput<typeof ParallelismSchema>;
export const DEFAULT_PARALLELISM: Parallelism = { stages: 1, microBatches: 1, schedule: "gpipe" };

/** Layers a model may have (a stage range's bound): one hash each in a pipeline stage's result. */
export const MAX_LAYERS = 1024;
export const MAX_LAYER_HASHES = MAX_LAYERS;

const MemberId = v.pipe(v.string(), v.minLength(1), v.maxLength(64));
const LayerIndex = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_LAYERS));

/** A stage: the layers [from, to) of the job's model (packages/training layers.ts order). */
export const StageRangeSchema = v.pipe(
  v.strictObject({ from: LayerIndex, to: LayerIndex }),
  v.check((stage) => stage.from < stage.to, "a stage holds at least one layer (from < to)"),
);

/**
 * A pipeline round's plan. replicas[r][k] is the member holding stage k of replica r. Stages are
 * consecutive and cover the model from layer 0; every replica has every stage; each member appears
 * once. Stage k's gradients are averaged over replicas[*][k] (a ring in replica order).
 */
export const PipelinePlanSchema = v.pipe(
  v.strictObject({
    kind: v.literal("pipeline"),
    stages: v.pipe(v.array(StageRangeSchema), v.minLength(1), v.maxLength(MAX_PIPELINE_STAGES)),
    replicas: v.pipe(v.array(v.pipe(v.array(MemberId), v.minLength(1), v.maxLength(MAX_PIPELINE_STAGES))), v.minLength(1), v.maxLength(256)),
    microBatches: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_MICRO_BATCHES)),
    schedule: ScheduleKindSchema,
  }),
  v.check((plan) => plan.stages.every((stage, k) => stage.from === (k === 0 ? 0 : plan.stages[k - 1]?.to)), "stages are consecutive from layer 0"),
  v.check((plan) => plan.replicas.every((replica) => replica.length === plan.stages.length), "every replica holds every stage"),
  v.check((plan) => new Set(plan.replicas.flat()).size === plan.replicas.flat().length, "a pipeline plan names each member once"),
);
export type PipelinePlan = v.InferOutput<typeof PipelinePlanSchema>;

/** Where a member sits in a pipeline plan, or undefined. */
export function pipelinePosition(plan: PipelinePlan, member: string): { replica: number; stage: number } | undefined {
  for (const [replica, row] of plan.replicas.entries()) {
    const stage = row.indexOf(member);
    if (stage >= 0) return { replica, stage };
  }
  return undefined;
}

/** The members holding stage k, in replica order: the ring that averages that stage's gradients. */
export function stageMembers(plan: PipelinePlan, stage: number): string[] {
  return plan.replicas.map((row) => row[stage] as string);
}
