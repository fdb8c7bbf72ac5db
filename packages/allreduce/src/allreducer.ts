import { decodeFrame, type Frame } from "@crowdtrain/protocol";
import { systemClock, type Clock } from "./clock.ts";
import { AllReduceError } from "./errors.ts";
import { resolveOptions, type AllReduceOptions } from "./options.ts";
import { firstNonFinite } from "./reduce.ts";
import { RoundRun, type RoundArgs, type RoundResult } from "./round.ts";
import type { PeerId, Transport } from "./transport.ts";

/** Counters of frames that did not belong to a running round, for diagnosis and tests. */
export type AllReducerCounters = {
  staleFrames: number;
  undecodableFrames: number;
  bufferedFutureBytes: number;
  lastViolation: string | undefined;
};

export interface AllReducer {
  /** Runs one round. Rejects with AllReduceError; never resolves with a partial result. */
  allReduce(args: RoundArgs): Promise<RoundResult>;
  counters(): AllReducerCounters;
  /**
   * Fails the running round (if it is `round`) with code "aborted", without telling peers: used when
   * the coordinator has already aborted the attempt for everyone. Frames still in flight for it are
   * dropped as stale.
   */
  abortRound(round: number, reason: string): void;
  /** Fails a running round with code "closed" and stops listening to the transport. */
  close(): void;
}

export type AllReducerDeps = {
  transport: Transport;
  clock?: Clock;
  options?: Partial<AllReduceOptions>;
};

type Held = { from: PeerId; frame: Frame; bytes: number };

/** Largest sample count a float32 carries exactly, so Σ samples is exact. */
const MAX_SAMPLES = 2 ** 24;

/**
 * Owns one transport subscription for many rounds, one at a time. Frames are routed by round id:
 * the running round gets them, older rounds' frames are dropped (a round that was aborted or
 * already finished), and frames of later rounds, sent by a peer that ran ahead, are held until
 * this peer starts that round.
 */
export function createAllReducer(deps: AllReducerDeps): AllReducer {
  const { transport } = deps;
  const clock = deps.clock ?? systemClock();
  const options = resolveOptions(deps.options);
  let current: RoundRun | undefined;
  let lastStarted = -1;
  let closed = false;
  const held = new Map<number, Held[]>();
  /** Rounds whose held frames overflowed the buffer: the sender is named when the round starts. */
  const overflowed = new Map<number, PeerId>();
  const counters: AllReducerCounters = { staleFrames: 0, undecodableFrames: 0, bufferedFutureBytes: 0, lastViolation: undefined };

  const hold = (from: PeerId, bytes: Uint8Array, round: number): void => {
    if (counters.bufferedFutureBytes + bytes.byteLength > options.maxBufferedFutureBytes) {
      if (!overflowed.has(round)) overflowed.set(round, from);
      counters.lastViolation = `${from} sent more than maxBufferedFutureBytes ahead of round ${round}`;
      return;
    }
    // The transport reuses its bytes after the handler returns: keep a copy, decoded from the copy.
    const copy = new Uint8Array(bytes); // a copy (Buffer#slice would be a view)
    const list = held.get(round) ?? [];
    list.push({ from, frame: decodeFrame(copy), bytes: copy.byteLength });
    held.set(round, list);
    counters.bufferedFutureBytes += copy.byteLength;
  };

  const dropHeldUpTo = (round: number): void => {
    for (const [r, list] of held) {
      if (r > round) continue;
      for (const item of list) counters.bufferedFutureBytes -= item.bytes;
      held.delete(r);
    }
    for (const r of overflowed.keys()) if (r < round) overflowed.delete(r);
  };

  const offFrame = transport.onFrame((from, bytes) => {
    let frame: Frame;
    try {
      frame = decodeFrame(bytes);
    } catch (error) {
      counters.undecodableFrames++;
      counters.lastViolation = `undecodable frame from ${from}: ${String(error)}`;
      current?.handlePeerViolation(from, `undecodable frame: ${String(error)}`);
      return;
    }
    if (current !== undefined && frame.round === current.round) current.handleFrame(from, frame, bytes.byteLength);
    else if (frame.round > lastStarted) hold(from, bytes, frame.round);
    else counters.staleFrames++;
  });
  const offGone = transport.onPeerGone((peer, reason) => current?.handlePeerGone(peer, reason));

  return {
    async allReduce(args) {
      if (closed) throw new Error("all-reducer is closed");
      if (current !== undefined) throw new Error(`round ${current.round} is still running; rounds run one at a time`);
      if (!Number.isInteger(args.round) || args.round <= lastStarted || args.round > 0xffffffff) {
        throw new RangeError(`round id ${args.round} must be an integer above the last one started (${lastStarted})`);
      }
      validateRing(args.ring, transport.self);
      if (args.frameBytes !== undefined) resolveOptions({ ...options, frameBytes: args.frameBytes });
      const run = new RoundRun(args, transport, clock, options);
      lastStarted = args.round;
      current = run;
      const inputProblem = checkInput(args);
      if (inputProblem !== undefined) run.abortLocally("bad-input", transport.self, inputProblem, true);
      else {
        run.start();
        const culprit = overflowed.get(args.round);
        if (culprit !== undefined) run.handlePeerViolation(culprit, "sent more frames ahead of this round than maxBufferedFutureBytes");
        for (const item of held.get(args.round) ?? []) run.handleFrame(item.from, item.frame, item.bytes);
      }
      dropHeldUpTo(args.round);
      try {
        return await run.result;
      } finally {
        current = undefined;
      }
    },
    counters: () => ({ ...counters }),
    abortRound(round, reason) {
      if (current?.round === round) current.abortLocally("aborted", undefined, reason, false);
      // A round not started yet must not start later: mark it as passed so its frames are stale.
      else if (round > lastStarted) {
        lastStarted = round;
        dropHeldUpTo(round);
      }
    },
    close() {
      if (closed) return;
      closed = true;
      offFrame();
      offGone();
      current?.abortLocally("closed", undefined, "the all-reducer was closed", true);
      dropHeldUpTo(Number.POSITIVE_INFINITY);
    },
  };
}

function validateRing(ring: readonly PeerId[], self: PeerId): void {
  if (ring.length === 0) throw new RangeError("ring is empty");
  if (new Set(ring).size !== ring.length) throw new RangeError(`ring has a repeated peer: ${ring.join(",")}`);
  if (!ring.includes(self)) throw new RangeError(`ring ${ring.join(",")} does not contain this peer ${self}`);
}

function checkInput(args: RoundArgs): string | undefined {
  if (!Number.isInteger(args.samples) || args.samples < 0 || args.samples > MAX_SAMPLES) {
    return `samples must be an integer in [0, ${MAX_SAMPLES}], got ${args.samples}`;
  }
  const bad = firstNonFinite(args.gradient);
  if (bad >= 0) return `own gradient has non-finite value ${args.gradient[bad]} at element ${bad}`;
  return undefined;
}

export { AllReduceError };
