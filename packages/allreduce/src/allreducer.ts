import { decodeFrame, GRID_MAX_DIMS, gridPlaces, type Frame } from "@crowdtrain/protocol";
import { systemClock, type Clock } from "./clock.ts";
import { AllReduceError } from "./errors.ts";
import { resolveOptions, type AllReduceOptions } from "./options.ts";
import { MAX_SAMPLES } from "./reduce.ts";
import { createRoundHost, type AllReducerCounters } from "./host.ts";
import { flatRingSpec, RoundRun, type RoundArgs, type RoundResult } from "./round.ts";
import { GridRun, type GridRoundArgs } from "./grid.ts";
import { torusGrid, type TorusRoundArgs } from "./torus.ts";
import { AttachedRun } from "./torus-attach.ts";
import type { PeerId, Transport } from "./transport.ts";

export type { AllReducerCounters };

export interface AllReducer {
  /** Runs one round. Rejects with AllReduceError; never resolves with a partial result. */
  allReduce(args: RoundArgs): Promise<RoundResult>;
  /** Runs one round as a 2D torus (torus.ts): the same result contract as `allReduce`. */
  allReduceTorus(args: TorusRoundArgs): Promise<RoundResult>;
  /** Runs one round as a d-dimensional grid of groups (grid.ts; a torus is the grid [X, Y]): the same result contract. */
  allReduceGrid(args: GridRoundArgs): Promise<RoundResult>;
  counters(): AllReducerCounters;
  /**
   * Fails the running round (if it is `round`) with code "aborted", without telling peers: used when
   * the coordinator has already aborted the attempt for everyone. Frames still in flight for it are
   * dropped as stale.
   */
  abortRound(attempt: number, reason: string): void;
  /** Fails a running round with code "closed" and stops listening to the transport. */
  close(): void;
}

export type AllReducerDeps = {
  transport: Transport;
  clock?: Clock;
  options?: Partial<AllReduceOptions>;
};

/**
 * The ring all-reducer: round isolation from the shared host (host.ts), each round a RoundRun, or a
 * GridRun of group rings (a torus is a 2-dimensional grid). Both speak ring frames, so one reducer on
 * one transport runs either.
 */
export function createAllReducer(deps: AllReducerDeps): AllReducer {
  const { transport } = deps;
  const clock = deps.clock ?? systemClock();
  const options = resolveOptions(deps.options);
  const host = createRoundHost<Frame, RoundResult>({ transport, decode: decodeFrame, maxBufferedFutureBytes: options.maxBufferedFutureBytes, name: "all-reducer" });
  const allReduceGrid = async (args: GridRoundArgs): Promise<RoundResult> => {
    host.checkCanStart(args.attempt);
    validateGrid(args.members, args.dims, args.attached ?? [], transport.self);
    if (args.frameBytes !== undefined) resolveOptions({ ...options, frameBytes: args.frameBytes });
    if ((args.codec as string | undefined) === "topk") throw new RangeError("a grid sums along its rings; topk does not (use a flat ring)");
    const run = args.attached?.includes(transport.self) === true ? new AttachedRun(args, transport, clock, options) : new GridRun(args, transport, clock, options);
    return host.run(run, checkInput(args));
  };
  return {
    async allReduce(args) {
      host.checkCanStart(args.attempt);
      validateRing(args.ring, transport.self);
      if (args.frameBytes !== undefined) resolveOptions({ ...options, frameBytes: args.frameBytes });
      if (args.topkFraction !== undefined && !(args.topkFraction > 0 && args.topkFraction <= 1)) throw new RangeError(`topkFraction must be in (0, 1], got ${args.topkFraction}`);
      const spec = flatRingSpec(args, args.frameBytes ?? options.frameBytes, transport.self);
      return host.run(new RoundRun(spec, transport, clock, options), checkInput(args));
    },
    async allReduceTorus(args) {
      validateRows(args.rows);
      return allReduceGrid(torusGrid(args));
    },
    allReduceGrid,
    counters: () => host.counters(),
    abortRound: (attempt, reason) => host.abortRound(attempt, reason),
    close: () => host.close(),
  };
}

function validateRing(ring: readonly PeerId[], self: PeerId): void {
  if (ring.length === 0) throw new RangeError("ring is empty");
  if (new Set(ring).size !== ring.length) throw new RangeError(`ring has a repeated peer: ${ring.join(",")}`);
  if (!ring.includes(self)) throw new RangeError(`ring ${ring.join(",")} does not contain this peer ${self}`);
}

function validateRows(rows: readonly (readonly PeerId[])[]): void {
  const width = rows[0]?.length ?? 0;
  if (width === 0) throw new RangeError("torus has no rows, or an empty first row");
  const ragged = rows.findIndex((row) => row.length !== width);
  if (ragged >= 0) throw new RangeError(`torus row ${ragged} has ${rows[ragged]?.length} members, row 0 has ${width}: every row must be as long`);
}

function validateGrid(members: readonly PeerId[], dims: readonly number[], attached: readonly PeerId[], self: PeerId): void {
  if (dims.length < 2 || dims.length > GRID_MAX_DIMS) throw new RangeError(`a grid has 2 to ${GRID_MAX_DIMS} dimensions, got ${dims.length}`);
  if (dims.some((size) => !Number.isInteger(size) || size < 1)) throw new RangeError(`grid dimensions must be whole numbers of at least 1, got ${dims.join("x")}`);
  const size = gridPlaces(dims);
  if (size !== members.length) throw new RangeError(`a ${dims.join("x")} grid has ${size} places, not ${members.length} members`);
  const groups = size / (dims[0] as number);
  if (attached.length > groups) throw new RangeError(`grid attaches ${attached.length} members to ${groups} ${dims.length === 2 ? "rows" : "dimension-0 groups"}: at most one per ${dims.length === 2 ? "row" : "group"}`);
  validateRing([...members, ...attached], self);
}

function checkInput(args: Pick<RoundArgs, "samples" | "gradient">): string | undefined {
  if (!Number.isInteger(args.samples) || args.samples < 0 || args.samples > MAX_SAMPLES) {
    return `samples must be an integer in [0, ${MAX_SAMPLES}], got ${args.samples}`;
  }
  // One pass: a non-finite value, or (the contribution is samples·g in float32) a finite one that overflows.
  for (let e = 0; e < args.gradient.length; e++) {
    const g = args.gradient[e] as number;
    if (!Number.isFinite(g)) return `own gradient has non-finite value ${g} at element ${e}`;
    if (!Number.isFinite(Math.fround(g * args.samples))) return `own gradient times ${args.samples} samples overflows float32 at element ${e}`;
  }
  return undefined;
}

export { AllReduceError };
