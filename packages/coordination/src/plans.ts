import type { Aggregation, Codec, Plan, Topology } from "@crowdtrain/protocol";

/**
 * Which communication plan a round runs (pure). A robust job runs a direct plan; a mean runs a flat
 * ring or a 2D torus (packages/allreduce torus.ts). The torus costs the ring's bytes in
 * 2(X−1) + 2(Y−1) latency-bound steps instead of 2(XY−1), so it wins once a step's latency counts,
 * and by far at hundreds of members (126 steps instead of 1,998 at 1,000 = 25 × 40).
 *
 * Every member takes part: members that fill no whole row (fewer than a row's length) are attached
 * to rows, one per row, and reach the grid through the row's first member. That hop moves the
 * whole vector up before the row starts and down after it ends, so a grid that needs none is
 * preferred.
 */
export type PlanSettings = {
  aggregation: Aggregation;
  codec: Codec;
  topology: Topology;
};

/** "auto" runs a torus from this many members; below, the ring's extra steps cost little. */
export const TORUS_AUTO_MIN_MEMBERS = 16;
/**
 * "auto" attaches members only from this many: an attached member's two full-vector hops cost
 * about what ~2 × its bytes over a link take, against the ~2N steps a torus saves; from 64 members
 * the ~100 saved steps dominate. A judgement, until the simulator (issue 16) measures it.
 */
export const TORUS_AUTO_ATTACH_MIN_MEMBERS = 64;
/** A grid's rows are at most this many times as long as its columns: else it is nearly a ring. */
export const TORUS_MAX_ASPECT = 4;

export type TorusShape = { columns: number; rows: number; attached: number };

/**
 * The grid for n members with the fewest attached members, then the fewest steps; at least 2×2,
 * columns ≤ rows ≤ TORUS_MAX_ASPECT × columns. The rest (< columns ≤ rows) are attached, one per
 * row at most. Undefined below 4 members.
 */
export function torusShape(n: number): TorusShape | undefined {
  let best: TorusShape | undefined;
  for (let columns = 2; columns * columns <= n; columns++) {
    const rows = Math.floor(n / columns);
    if (rows > TORUS_MAX_ASPECT * columns) continue;
    const shape = { columns, rows, attached: n - columns * rows };
    if (best === undefined || shape.attached < best.attached || (shape.attached === best.attached && columns + rows < best.columns + best.rows)) best = shape;
  }
  return best;
}

/** The torus a round of n members runs under these settings, or undefined for a ring or a direct plan. */
export function torusFor(n: number, settings: PlanSettings): TorusShape | undefined {
  // topk's sparse blocks are gathered, not summed along rings: a torus gains nothing there.
  if (settings.aggregation !== "mean" || settings.codec === "topk" || settings.topology === "ring") return undefined;
  const shape = torusShape(n);
  if (shape === undefined || settings.topology === "torus") return shape;
  if (n < TORUS_AUTO_MIN_MEMBERS) return undefined;
  return shape.attached === 0 || n >= TORUS_AUTO_ATTACH_MIN_MEMBERS ? shape : undefined;
}

/** The plan of a round whose members, in order, are `order`: the grid row by row, then the attached. */
export function buildPlan(order: readonly string[], settings: PlanSettings): Plan {
  const members = [...order];
  if (settings.aggregation !== "mean") return { kind: "direct", members, aggregation: settings.aggregation };
  const shape = torusFor(members.length, settings);
  if (shape === undefined) return { kind: "ring", members };
  return { kind: "torus", members, columns: shape.columns, rows: shape.rows };
}
