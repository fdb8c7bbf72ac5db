import * as v from "valibot";
import { GRID_MAX_DIMS } from "./frames.ts";

/**
 * A communication plan: who averages with whom in one attempt, and how. Every member of an attempt
 * receives the same plan and derives its own part from it (its neighbours, its shards). Variants:
 * the ring (weighted mean, pipelined), the 2D torus (the same mean in three shorter rings), groups
 * (the same mean in a d-dimensional grid of small group rings) and the direct layout (robust
 * aggregation by shard owners); further plans are added as new variants without touching the
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

/** Largest group along any dimension of a groups plan: a member keeps at most two links per dimension. */
export const MAX_GROUP_SIZE = 64;

export const GroupsPlanSchema = v.pipe(
  v.strictObject({
    kind: v.literal("groups"),
    /**
     * Every member of the attempt. The first Π dims form a d-dimensional grid in mixed-radix order
     * (member p sits at ⌊p / stride_k⌋ mod dims[k] along dimension k, dimension 0 varying fastest):
     * each member reduce-scatters along dimensions 0 .. d−2 in turn within its group of that
     * dimension, all-reduces along the last, and all-gathers back (packages/allreduce grid.ts),
     * Σ 2(g_k − 1) steps. The rest, at most one per dimension-0 group, are attached as in a torus:
     * the i-th to member i·dims[0].
     */
    members: v.pipe(
      v.array(MemberId),
      v.minLength(1),
      v.maxLength(MAX_PLAN_MEMBERS),
      v.check((members) => new Set(members).size === members.length, "a groups plan names each member once"),
    ),
    /** Group size along each dimension. */
    dims: v.pipe(v.array(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_GROUP_SIZE))), v.minLength(2), v.maxLength(GRID_MAX_DIMS)),
  }),
  v.check((plan) => gridPlaces(plan.dims) <= plan.members.length, "a groups plan's grid (the product of its dims) needs that many members"),
  v.check((plan) => plan.members.length - gridPlaces(plan.dims) <= gridPlaces(plan.dims) / (plan.dims[0] as number), "a groups plan attaches at most one member per dimension-0 group"),
);

export const PlanSchema = v.variant("kind", [RingPlanSchema, DirectPlanSchema, TorusPlanSchema, GroupsPlanSchema]);
export type Plan = v.InferOutput<typeof PlanSchema>;
export type RingPlan = v.InferOutput<typeof RingPlanSchema>;
export type DirectPlan = v.InferOutput<typeof DirectPlanSchema>;
export type TorusPlan = v.InferOutput<typeof TorusPlanSchema>;
export type GroupsPlan = v.InferOutput<typeof GroupsPlanSchema>;

/** The places of a grid of these dimensions: their product. */
export function gridPlaces(dims: readonly number[]): number {
  return dims.reduce((product, size) => product * size, 1);
}

/**
 * A torus or groups plan as the grid an all-reducer runs (packages/allreduce allReduceGrid): its
 * members in mixed-radix order, its dimensions (a torus is [columns, rows]) and its attached members.
 */
export function planGrid(plan: TorusPlan | GroupsPlan): { members: string[]; dims: number[]; attached: string[]; label: string } {
  const dims = plan.kind === "torus" ? [plan.columns, plan.rows] : [...plan.dims];
  const places = gridPlaces(dims);
  return { members: plan.members.slice(0, places), dims, attached: plan.members.slice(places), label: plan.kind };
}
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
