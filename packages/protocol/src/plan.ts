import * as v from "valibot";

/**
 * A communication plan: who averages with whom in one attempt, and how. Every member of an attempt
 * receives the same plan and derives its own part from it (its neighbours, its shards). Today's
 * only plan is the ring; grouped and direct plans are added as new variants without touching the
 * messages that carry them.
 */
const MemberId = v.pipe(v.string(), v.minLength(1), v.maxLength(64));
/** A plan never names more members than a job admits. */
export const MAX_PLAN_MEMBERS = 4096;

export const RingPlanSchema = v.strictObject({
  kind: v.literal("ring"),
  /** Ring order: each member receives from the one before it and sends to the one after it. */
  members: v.pipe(v.array(MemberId), v.minLength(1), v.maxLength(MAX_PLAN_MEMBERS)),
});

export const PlanSchema = v.variant("kind", [RingPlanSchema]);
export type Plan = v.InferOutput<typeof PlanSchema>;
export type RingPlan = v.InferOutput<typeof RingPlanSchema>;

/** Every member of a plan, in plan order. */
export function planMembers(plan: Plan): readonly string[] {
  return plan.members;
}
