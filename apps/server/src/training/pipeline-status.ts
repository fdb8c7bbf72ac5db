import type { CommittedRound } from "@crowdtrain/coordination";
import { bubbleTheory } from "@crowdtrain/pipeline";
import { stageMembers, type Status } from "@crowdtrain/protocol";

type LastPipeline = NonNullable<NonNullable<Status["pipeline"]>["last"]>;

/**
 * The last committed pipeline round as the dashboard shows it: the plan, each stage's hash, and how
 * busy each stage was (its members' reported span and compute time, averaged over the replicas),
 * with the measured bubble (mean idle share of a stage) beside GPipe's theory. Pure.
 */
export function lastPipeline(commit: CommittedRound): LastPipeline | undefined {
  const pipeline = commit.pipeline;
  if (pipeline === undefined) return undefined;
  const { plan, stageHashes } = pipeline;
  const stages: { spanMs: number; busyMs: number }[] = [];
  for (const [stage] of plan.stages.entries()) {
    const timings = stageMembers(plan, stage).map((peer) => commit.reports.get(peer)?.timings);
    const measured = timings.flatMap((t) => (t?.stageBusyMs === undefined || !(t.computeMs > 0) ? [] : [{ spanMs: t.computeMs, busyMs: Math.min(t.stageBusyMs, t.computeMs) }]));
    if (measured.length < timings.length) break;
    const mean = (pick: (m: (typeof measured)[number]) => number): number => measured.reduce((sum, m) => sum + pick(m), 0) / measured.length;
    stages.push({ spanMs: mean((m) => m.spanMs), busyMs: mean((m) => m.busyMs) });
  }
  const complete = stages.length === plan.stages.length;
  return {
    round: commit.round,
    plan,
    stageHashes,
    ...(complete ? { stages, bubble: stages.reduce((sum, s) => sum + (1 - s.busyMs / s.spanMs), 0) / stages.length } : {}),
    bubbleTheory: bubbleTheory(plan.stages.length, plan.microBatches),
  };
}
