// How long until the job finishes: rounds left (by the round target and by the epoch limit), times
// the recent pace of commits. Pure.
import type { Status } from "@crowdtrain/protocol";

/** Commits that set the pace: recent enough to follow a change of swarm, enough to smooth one slow round. */
export const PACE_WINDOW = 10;

export type EtaInput = Pick<Status, "status" | "round" | "targetRounds" | "epoch" | "epochProgress"> & {
  job: Pick<Status["job"], "epochs" | "batchSize">;
  recentRounds: readonly { at: number; roundMs: number }[];
};

export type Eta =
  | { kind: "done" }
  | { kind: "paused"; rounds: number | undefined }
  | { kind: "unknown"; rounds: number | undefined; why: string }
  | { kind: "eta"; rounds: number; ms: number };

/**
 * Rounds still to commit, or undefined when nothing bounds them. A round takes `batchSize` samples
 * of the epoch (the last one of an epoch what is left), so an epoch is ceil(total / batch) rounds.
 */
export function remainingRounds(input: EtaInput): number | undefined {
  if (input.status === "done") return 0;
  let left = Number.POSITIVE_INFINITY;
  if (input.targetRounds !== undefined) left = Math.max(0, input.targetRounds - input.round);
  const { epochs, batchSize } = input.job;
  if (epochs !== undefined) {
    const { used, total } = input.epochProgress;
    const perEpoch = Math.ceil(total / batchSize);
    const inThisEpoch = Math.ceil(Math.max(0, total - used) / batchSize);
    left = Math.min(left, inThisEpoch + Math.max(0, epochs - input.epoch - 1) * perEpoch);
  }
  return Number.isFinite(left) ? left : undefined;
}

/** Milliseconds per committed round lately: spacing of the last commits, else the one round's own time. */
export function msPerRound(recent: readonly { at: number; roundMs: number }[]): number | undefined {
  const window = recent.slice(-PACE_WINDOW);
  const first = window[0];
  const last = window.at(-1);
  if (first === undefined || last === undefined) return undefined;
  if (window.length === 1) return last.roundMs > 0 ? last.roundMs : undefined;
  const pace = (last.at - first.at) / (window.length - 1);
  return pace > 0 ? pace : undefined;
}

export function estimateEta(input: EtaInput): Eta {
  const rounds = remainingRounds(input);
  if (input.status === "done" || rounds === 0) return { kind: "done" };
  if (input.status === "paused") return { kind: "paused", rounds };
  if (rounds === undefined) return { kind: "unknown", rounds, why: "no round or epoch limit" };
  const pace = msPerRound(input.recentRounds);
  if (pace === undefined) return { kind: "unknown", rounds, why: "no round committed yet" };
  return { kind: "eta", rounds, ms: rounds * pace };
}
