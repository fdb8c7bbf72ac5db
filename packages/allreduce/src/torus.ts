import type { Codec } from "@crowdtrain/protocol";
import type { GridRoundArgs } from "./grid.ts";
import type { AllReduceOptions } from "./options.ts";
import type { PeerId } from "./transport.ts";

export type TorusRoundArgs = {
  /** Unique id of this attempt, greater than every earlier one on this all-reducer. */
  attempt: number;
  /** The grid, row by row, the same on every member: every row the same length, each member once. */
  rows: readonly (readonly PeerId[])[];
  /** Members attached to the grid, at most one per row: the i-th to the first member of row i (torus-attach.ts). */
  attached?: readonly PeerId[];
  /** This peer's gradient; not modified. All members must pass the same length. */
  gradient: Float32Array;
  /** Samples the gradient was averaged over: its weight in the mean. */
  samples: number;
  frameBytes?: number;
  /** A summing codec (topk's sparse blocks are not summed on the way, so they gain nothing from a torus). */
  codec?: Exclude<Codec, "topk">;
};

/**
 * How long a host waits for its attached member's first chunk. Its row neighbours wait
 * ringStartTimeoutMs for the host's first frame, which cannot leave before that contribution is in:
 * the host must name a silent guest first, or they would name the host. progressTimeoutMs earlier
 * leaves its abort time to arrive (so ringStartTimeoutMs should be at least twice progressTimeoutMs;
 * with the defaults, 25 s against 30 s).
 */
export function guestStartMs(options: Pick<AllReduceOptions, "ringStartTimeoutMs" | "progressTimeoutMs">): number {
  return Math.max(options.progressTimeoutMs, options.ringStartTimeoutMs - options.progressTimeoutMs);
}

/**
 * A torus attempt is the two-dimensional grid (grid.ts): its rows are dimension 0, its columns
 * dimension 1, so a member at (row r, column c):
 * 1. row reduce-scatter: ends owning its row's sum of segment c (X segments);
 * 2. column all-reduce of segment c among the Y members of column c: every one of them ends with
 *    the whole grid's sum of segment c, bit-identical;
 * 3. row all-gather: each member's segment goes round its row as the bytes its owner encoded.
 * Steps: 2(X−1) + 2(Y−1) instead of the flat ring's 2(XY−1) (36 instead of 198 at 10×10)
 * (Patarasuk & Yuan's ring run twice over: "2D-torus all-reduce", Mikami et al. 2018).
 */
export function torusGrid(args: TorusRoundArgs): GridRoundArgs {
  const { rows, ...rest } = args;
  return { ...rest, members: rows.flat(), dims: [rows[0]?.length ?? 0, rows.length], label: "torus" };
}
