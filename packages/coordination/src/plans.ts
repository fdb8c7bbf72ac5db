import type { Aggregation, Codec, Plan, Topology } from "@crowdtrain/protocol";

/**
 * Which communication plan a round runs (pure). A robust job runs a direct plan; a mean runs a flat
 * ring, a 2D torus or a grid of groups (packages/allreduce grid.ts; a torus is its 2D case). The
 * torus costs the ring's bytes in 2(X−1) + 2(Y−1) latency-bound steps instead of 2(XY−1), so it wins
 * once a step's latency counts, and by far at hundreds of members (126 steps instead of 1,998 at
 * 1,000 = 25 × 40); groups cut the steps again to Σ 2(g_k − 1) (30 at 1,000 = 2³·5³).
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
  if (shape === undefined || settings.topology !== "auto") return shape;
  if (n < TORUS_AUTO_MIN_MEMBERS) return undefined;
  return shape.attached === 0 || n >= TORUS_AUTO_ATTACH_MIN_MEMBERS ? shape : undefined;
}

/** "auto" runs groups from this many members when they cost fewer steps than the torus (attaching counted: GROUPS_ATTACH_COST_STEPS). */
export const GROUPS_AUTO_MIN_MEMBERS = 64;
/**
 * The largest prime a groups grid takes as a dimension. A member keeps two links per dimension and
 * a dimension of g costs 2(g − 1) steps, so the grid is the member count's prime factors (merging two
 * never saves a step: ab − 1 ≥ (a − 1) + (b − 1)); a count with a larger prime factor is a grid of
 * fewer places with members attached.
 */
export const GROUPS_MAX_FACTOR = 13;

export type GroupsShape = { dims: number[]; attached: number };

/** Steps of a grid's all-reduce: 2(g − 1) along each dimension. */
export const gridSteps = (dims: readonly number[]): number => dims.reduce((steps, g) => steps + 2 * (g - 1), 0);

/** The prime factors of n in ascending order, or undefined when one exceeds GROUPS_MAX_FACTOR. */
function smallFactors(n: number): number[] | undefined {
  const factors: number[] = [];
  let rest = n;
  for (let p = 2; p <= GROUPS_MAX_FACTOR && rest > 1; p++) {
    while (rest % p === 0) {
      factors.push(p);
      rest /= p;
    }
  }
  return rest === 1 ? factors : undefined;
}

/**
 * What attaching members costs, in all-reduce steps: an attached member's whole float32 vector
 * crosses to its host before the host's first group starts and back after the last ends (at
 * 20 Mbit/s, 50 ms paths and the default MLP with int8 about 15 steps of 25 ms). The hops of
 * different hosts run at once, so the cost is paid once whatever the number attached.
 */
export const GROUPS_ATTACH_COST_STEPS = 15;
/** Groups attach at most this share of the members (and one per dimension-0 group). */
export const GROUPS_MAX_ATTACHED_SHARE = 1 / 32;

/**
 * The grid of groups for n members: the fewest steps, counting GROUPS_ATTACH_COST_STEPS when any
 * member is attached, among grids of the count's small prime factors (each ≤ GROUPS_MAX_FACTOR, at
 * least two) that leave at most n·GROUPS_MAX_ATTACHED_SHARE members attached, one per dimension-0
 * group; ties go to fewer attached. Members churn, so the count is rarely a round number: 1,006 runs
 * 2³·5³ with 6 attached (30 steps) rather than 7·11·13 with 5 (56). When no grid is that close (small
 * or awkward counts), the largest grid that can take the rest attached. Undefined below 4 members.
 */
export function groupsShape(n: number): GroupsShape | undefined {
  let best: (GroupsShape & { cost: number }) | undefined;
  const fewest = Math.floor(n * (1 - GROUPS_MAX_ATTACHED_SHARE));
  for (let places = n; places >= 4; places--) {
    const attached = n - places;
    if (attached > places / 2) break; // no smaller grid can take them either
    if (places < fewest && best !== undefined) break;
    const dims = smallFactors(places);
    if (dims === undefined || dims.length < 2 || attached > places / (dims[0] as number)) continue;
    const cost = gridSteps(dims) + (attached > 0 ? GROUPS_ATTACH_COST_STEPS : 0);
    if (best === undefined || cost < best.cost) best = { dims, attached, cost };
  }
  return best === undefined ? undefined : { dims: best.dims, attached: best.attached };
}

export type PlanShape = ({ kind: "torus" } & TorusShape) | ({ kind: "groups" } & GroupsShape);

/** The grid a round of n members runs under these settings, or undefined for a ring or a direct plan. */
export function gridFor(n: number, settings: PlanSettings): PlanShape | undefined {
  const torus = torusFor(n, settings);
  if (settings.aggregation !== "mean" || settings.codec === "topk" || settings.topology === "ring" || settings.topology === "torus") return torus === undefined ? undefined : { kind: "torus", ...torus };
  const groups = groupsShape(n);
  const attachCost = (attached: number): number => (attached > 0 ? GROUPS_ATTACH_COST_STEPS : 0);
  const torusCost = torus === undefined ? Number.POSITIVE_INFINITY : gridSteps([torus.columns, torus.rows]) + attachCost(torus.attached);
  const groupsWin = groups !== undefined && (settings.topology === "groups" || (n >= GROUPS_AUTO_MIN_MEMBERS && gridSteps(groups.dims) + attachCost(groups.attached) < torusCost));
  if (groupsWin) return { kind: "groups", ...groups };
  return torus === undefined ? undefined : { kind: "torus", ...torus };
}

/** The plan of a round whose members, in order, are `order`: the grid (row by row, or in mixed-radix order), then the attached. */
export function buildPlan(order: readonly string[], settings: PlanSettings): Plan {
  const members = [...order];
  if (settings.aggregation !== "mean") return { kind: "direct", members, aggregation: settings.aggregation };
  const shape = gridFor(members.length, settings);
  if (shape === undefined) return { kind: "ring", members };
  if (shape.kind === "groups") return { kind: "groups", members, dims: shape.dims };
  return { kind: "torus", members, columns: shape.columns, rows: shape.rows };
}
