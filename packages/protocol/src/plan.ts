import * as v from "valibot";

/**
 * A communication plan: who averages with whom in one attempt, and how. Every member of an attempt
 * receives the same plan and derives its own part from it (its neighbours, its shards). Variants:
 * the ring (weighted mean, pipelined) and the direct layout (robust aggregation by shard owners);
 * grouped plans are added as new variants without touching the messages that carry them.
 */
const MemberId = v.pipe(v.string(), v.minLength(1), v.maxLength(64));
/** A plan never names more members than a job admits. */
export const MAX_PLAN_MEMBERS = 4096;

export const RingPlanSchema = v.strictObject({
  kind: v.literal("ring"),
  /** Ring order: each member receives from the one before it and sends to the one after it. */
  members: v.pipe(v.array(MemberId), v.minLength(1), v.maxLength(MAX_PLAN_MEMBERS)),
});

/**
 * How a shard owner of a direct plan combines the N contributions of its shard:
 * - "mean": unweighted mean (one member, one vote; no sample counts travel);
 * - "trimmed-mean": coordinate-wise, drop the largest and smallest values, average the rest;
 * - "centered-clip": CenteredClip from the coordinate-wise median (bounded iterations).
 */
export const AggregationSchema = v.picklist(["mean", "trimmed-mean", "centered-clip"]);
export type Aggregation = v.InferOutput<typeof AggregationSchema>;

export const DirectPlanSchema = v.strictObject({
  kind: v.literal("direct"),
  /**
   * Plan order: the vector is cut into members.length shards (the ring's partition) and shard i is
   * owned by members[i]. Every member sends shard i of its vector straight to members[i], which
   * aggregates it and sends the result to every other member (BTARD-style reduce-scatter/all-gather).
   */
  members: v.pipe(
    v.array(MemberId),
    v.minLength(1),
    v.maxLength(MAX_PLAN_MEMBERS),
    v.check((members) => new Set(members).size === members.length, "a direct plan names each member once"),
  ),
  aggregation: AggregationSchema,
});

export const PlanSchema = v.variant("kind", [RingPlanSchema, DirectPlanSchema]);
export type Plan = v.InferOutput<typeof PlanSchema>;
export type RingPlan = v.InferOutput<typeof RingPlanSchema>;
export type DirectPlan = v.InferOutput<typeof DirectPlanSchema>;

/** Every member of a plan, in plan order (ring order, or shard-owner order for a direct plan). */
export function planMembers(plan: Plan): readonly string[] {
  return plan.members;
}
