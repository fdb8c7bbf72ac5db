import * as v from "valibot";

/**
 * A communication plan: who averages with whom in one attempt, and how. Every member of an attempt
 * receives the same plan and derives its own part from it (its neighbours, its shards). Variants:
 * the ring (weighted mean, pipelined), the 2D torus (the same mean in three shorter rings) and the
 * direct layout (robust aggregation by shard owners); further grouped plans are added as new
 * variants without touching the messages that carry them.
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

export const TorusPlanSchema = v.pipe(
  v.strictObject({
    kind: v.literal("torus"),
    /**
     * Every member of the attempt. The first columns·rows form the grid row by row (row r is
     * members[r·columns ..][..columns]): each reduce-scatters along its row, all-reduces its segment
     * down its column and all-gathers along its row (packages/allreduce torus.ts), 2(X−1) + 2(Y−1)
     * steps instead of 2(XY−1). The rest, at most one per row, are attached: the i-th sends its
     * contribution to the first member of row i and gets the result back from it, so a member count
     * that fills no grid still runs a torus with everyone in it.
     */
    members: v.pipe(
      v.array(MemberId),
      v.minLength(1),
      v.maxLength(MAX_PLAN_MEMBERS),
      v.check((members) => new Set(members).size === members.length, "a torus plan names each member once"),
    ),
    /** Members per row of the grid (X). */
    columns: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_PLAN_MEMBERS)),
    /** Rows of the grid (Y). */
    rows: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_PLAN_MEMBERS)),
  }),
  v.check((plan) => plan.columns * plan.rows <= plan.members.length, "a torus plan's grid (columns x rows) needs that many members"),
  v.check((plan) => plan.members.length - plan.columns * plan.rows <= plan.rows, "a torus plan attaches at most one member per row"),
);

export const PlanSchema = v.variant("kind", [RingPlanSchema, DirectPlanSchema, TorusPlanSchema]);
export type Plan = v.InferOutput<typeof PlanSchema>;
export type RingPlan = v.InferOutput<typeof RingPlanSchema>;
export type DirectPlan = v.InferOutput<typeof DirectPlanSchema>;
export type TorusPlan = v.InferOutput<typeof TorusPlanSchema>;

/** A torus plan's grid, row by row. */
export function torusRows(plan: TorusPlan): string[][] {
  const rows: string[][] = [];
  for (let r = 0; r < plan.rows; r++) rows.push(plan.members.slice(r * plan.columns, (r + 1) * plan.columns));
  return rows;
}

/** A torus plan's attached members: the i-th is attached to the first member of row i. */
export function torusAttached(plan: TorusPlan): string[] {
  return plan.members.slice(plan.columns * plan.rows);
}

/** Every member of a plan, in plan order (ring order, or shard-owner order for a direct plan). */
export function planMembers(plan: Plan): readonly string[] {
  return plan.members;
}
