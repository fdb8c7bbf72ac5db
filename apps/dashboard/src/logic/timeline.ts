// Each recent round split into its phases for the timeline. Pure.
import { computeTimeMs, type RoundPoint } from "@crowdtrain/protocol";

export type Phase = "compute" | "allReduce" | "update" | "other";
export const PHASES: readonly { key: Phase; label: string }[] = [
  { key: "compute", label: "compute" },
  { key: "allReduce", label: "all-reduce" },
  { key: "update", label: "update" },
  { key: "other", label: "other (sync, upload, waiting)" },
];

export type RoundSplit = { round: number; totalMs: number; phases: Record<Phase, number> };

/**
 * The slowest member's compute (with the gradient read-back), all-reduce and update times of a
 * round, and the rest of its wall time as "other". The phases of different members may come from
 * different members; when they add up to more than the round took, the bar is as long as their sum.
 */
export function splitRound(point: Pick<RoundPoint, "round" | "roundMs" | "computeMs" | "readbackMs" | "allReduceMs" | "updateMs">): RoundSplit {
  const compute = computeTimeMs(point);
  const measured = compute + point.allReduceMs + point.updateMs;
  const total = Math.max(point.roundMs, measured);
  return {
    round: point.round,
    totalMs: total,
    phases: { compute, allReduce: point.allReduceMs, update: point.updateMs, other: Math.max(0, total - measured) },
  };
}

/** Mean share of each phase over the rounds (for the legend), 0..1. */
export function phaseShares(splits: readonly RoundSplit[]): Record<Phase, number> {
  const sums: Record<Phase, number> = { compute: 0, allReduce: 0, update: 0, other: 0 };
  let total = 0;
  for (const split of splits) {
    total += split.totalMs;
    for (const { key } of PHASES) sums[key] += split.phases[key];
  }
  for (const { key } of PHASES) sums[key] = total > 0 ? sums[key] / total : 0;
  return sums;
}

/** A bar taller than this many times the median round is cut, so one outlier does not flatten the rest. */
export const OUTLIER_FACTOR = 3;

/**
 * The time scale of the timeline: the longest round, unless some rounds (typically the first, which
 * compiles shaders and fetches data) take more than OUTLIER_FACTOR times the median; then the scale
 * stops there and those bars are drawn cut.
 */
export function timelineScale(splits: readonly RoundSplit[]): { maxMs: number; cut: boolean } {
  const totals = splits.map((s) => s.totalMs).sort((a, b) => a - b);
  const longest = totals.at(-1) ?? 0;
  const median = totals[Math.floor((totals.length - 1) / 2)] ?? 0;
  const cap = median * OUTLIER_FACTOR;
  return cap > 0 && longest > cap ? { maxMs: cap, cut: true } : { maxMs: longest, cut: false };
}
