import { DEFAULT_DIRECT_OPTIONS, DEFAULT_OPTIONS, type AllReduceOptions, type DirectOptions } from "@crowdtrain/allreduce";
import type { Aggregation } from "@crowdtrain/protocol";

/**
 * The coordinator's round deadline, checked against the timeouts of the all-reducer its workers
 * run. When something stalls, a round ends in one of three ways:
 *
 * 1. A worker's all-reducer names the silent peer. The ring waits up to `ringStartTimeoutMs` for a
 *    neighbour still computing its gradient; the direct plan waits up to `startTimeoutMs` for a
 *    contributor and up to `resultTimeoutMs` for an owner, whose clock may start `startTimeoutMs`
 *    late. The worker reports `failed` with that suspect: the coordinator aborts and records the
 *    accusation against that one peer.
 * 2. The coordinator's deadline: it aborts the round and knocks back (strikes, re-syncs) every
 *    member that has not reported, which, before (1) fired, is every honest member still waiting.
 * 3. A worker's hard bound (`roundTimeoutMs`): it gives up and accuses a peer on a guess (its left
 *    neighbour, or the first member still owing it data).
 *
 * So the deadline comes after (1), or the coordinator blames every waiting member instead of the
 * silent one; what it leaves after (1) is the time a member's gradient computation may take, since
 * a worker's all-reduce clocks start only after it. And it comes before (3): the coordinator knows
 * who reported and who did not, while the hard bound only guesses and a wrong accusation strikes
 * the worker that made it. The hard bound is left for rounds the coordinator can no longer end
 * (the worker lost its socket).
 */

/**
 * 90 s: after the direct plan's worst precise wait (30 s + 40 s; the earlier 60 s default came
 * before it, so a silent owner got every waiting member struck), 60 s after the ring's (30 s), and
 * 30 s before either hard bound (120 s), far more than the abort needs to reach a worker.
 */
export const DEFAULT_ROUND_DEADLINE_MS = 90_000;

/** The all-reducer timeouts the deadline depends on. */
export type ReducerTimeouts = {
  ring: Pick<AllReduceOptions, "ringStartTimeoutMs" | "roundTimeoutMs">;
  direct: Pick<DirectOptions, "startTimeoutMs" | "resultTimeoutMs" | "roundTimeoutMs">;
};

/** What apps/worker runs: it creates both all-reducers with their default options. */
export const WORKER_REDUCER_TIMEOUTS: ReducerTimeouts = { ring: DEFAULT_OPTIONS, direct: DEFAULT_DIRECT_OPTIONS };

/** The longest wait after which `aggregation`'s all-reducer names a silent peer, and its hard bound. */
function waitsOf(aggregation: Aggregation, reducers: ReducerTimeouts): { what: string; namesWithinMs: number; hardBoundMs: number } {
  if (aggregation === "mean") {
    const { ringStartTimeoutMs, roundTimeoutMs } = reducers.ring;
    return { what: "the ring all-reducer's ringStartTimeoutMs", namesWithinMs: ringStartTimeoutMs, hardBoundMs: roundTimeoutMs };
  }
  const { startTimeoutMs, resultTimeoutMs, roundTimeoutMs } = reducers.direct;
  return { what: "the direct all-reducer's startTimeoutMs + resultTimeoutMs", namesWithinMs: startTimeoutMs + resultTimeoutMs, hardBoundMs: roundTimeoutMs };
}

/** Throws a RangeError naming both values unless the deadline falls between the precise timeouts and the hard bound. */
export function checkRoundDeadline(roundDeadlineMs: number, aggregation: Aggregation, reducers: ReducerTimeouts = WORKER_REDUCER_TIMEOUTS): void {
  const { what, namesWithinMs, hardBoundMs } = waitsOf(aggregation, reducers);
  if (!(roundDeadlineMs > namesWithinMs)) {
    throw new RangeError(
      `roundDeadlineMs (${roundDeadlineMs}) must exceed ${what} (${namesWithinMs}): ` +
        "a deadline before the workers name a silent peer strikes every member waiting for it",
    );
  }
  if (!(roundDeadlineMs < hardBoundMs)) {
    throw new RangeError(
      `roundDeadlineMs (${roundDeadlineMs}) must be below the ${aggregation === "mean" ? "ring" : "direct"} all-reducer's roundTimeoutMs (${hardBoundMs}): ` +
        "the coordinator, which knows who reported, must end a stalled round before a worker's hard bound accuses a peer on a guess",
    );
  }
}
