import type { Coordinator } from "@crowdtrain/coordination";
import { SUMMARY_ACCURACY_POINTS, SUMMARY_LOSS_POINTS, type Job, type Summary } from "@crowdtrain/protocol";
import type { Metrics } from "./metrics.ts";
import { memberRow } from "./status.ts";

export type SummaryInput = { job: Job; coordinator: Coordinator; metrics: Metrics; isReducing: (peerId: string) => boolean };

/**
 * The volunteer page's view of the job (`GET /api/summary`): its size does not grow with the swarm
 * (the histories are their latest points, one member's row at most), so thousands of volunteers
 * may poll it. Building it still reads the coordinator's O(members) state view.
 */
export function buildSummary(input: SummaryInput, peer: string | undefined): Summary {
  const { job, coordinator, metrics } = input;
  const s = coordinator.state;
  const member = peer === undefined ? undefined : s.members.find((m) => m.peerId === peer);
  const row = member === undefined ? undefined : memberRow(member, job, input.isReducing(member.peerId));
  return {
    job,
    status: s.status,
    round: s.committedRound,
    targetRounds: s.maxRounds,
    epoch: s.epoch,
    epochProgress: s.epochProgress,
    samplesSeen: metrics.samplesSeen,
    members: s.members.length,
    loss: metrics.rounds.slice(-SUMMARY_LOSS_POINTS).map((r) => [r.round, r.loss]),
    accuracy: metrics.evals.slice(-SUMMARY_ACCURACY_POINTS).map((e) => [e.round, e.accuracy]),
    you: row === undefined ? undefined : { state: row.state, share: row.share, samplesPerSecond: row.samplesPerSecond },
  };
}
