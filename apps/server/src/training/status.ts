import type { CommittedRound, Coordinator } from "@crowdtrain/coordination";
import type { Job, PeerStatus, Status } from "@crowdtrain/protocol";
import type { EventLog } from "../cluster/event-log.ts";
import { ringLinks } from "../dashboard/links.ts";
import type { PeerRoster } from "../dashboard/roster.ts";
import type { Metrics } from "./metrics.ts";

// The shape lives in @crowdtrain/protocol (StatusSchema), so the dashboard parses what it receives.
export type { PeerStatus, Status } from "@crowdtrain/protocol";

/** How many recent rounds and events /api/status carries; the full curves come as compact pairs. */
const RECENT_ROUNDS = 50;
const RECENT_EVENTS = 100;

export type StatusInput = {
  job: Job;
  coordinator: Coordinator;
  metrics: Metrics;
  log: EventLog;
  storeRound: number;
  /** Keeps departed peers as "gone" for a while. */
  roster: PeerRoster;
  /** The last committed round, for the ring's link throughput. */
  lastCommit: CommittedRound | undefined;
  now: number;
  /** Whether a training member reported being in the all-reduce (shown as "reducing"). */
  isReducing?: (peerId: string) => boolean;
};

/** The coordinator's members as status rows, in join order. */
export function livePeers(coordinator: Coordinator, job: Job, isReducing: (peerId: string) => boolean = () => false): PeerStatus[] {
  return coordinator.state.members.map((m) => ({
    id: m.peerId,
    name: m.name,
    backend: m.backend,
    adapter: m.adapter,
    state: m.state === "training" && isReducing(m.peerId) ? "reducing" : m.state,
    samplesPerSecond: m.samplesPerSecond,
    share: m.lastLease / job.batchSize,
    lastRoundMs: m.lastRoundMs,
    lastHash: m.lastHash,
    bytesSent: m.bytesSent,
    bytesReceived: m.bytesReceived,
  }));
}

export function buildStatus(input: StatusInput): Status {
  const { job, coordinator, metrics, log, lastCommit, now } = input;
  const s = coordinator.state;
  const open = s.current;
  return {
    now,
    job,
    status: s.status,
    minWorkers: coordinator.config.minWorkers,
    round: s.committedRound,
    targetRounds: s.maxRounds,
    epoch: s.epoch,
    samplesSeen: metrics.samplesSeen,
    epochProgress: s.epochProgress,
    coverage: s.finishedEpochs,
    ring: open?.ring ?? [],
    openRound: open === undefined ? undefined : { round: open.round, attempt: open.attempt, ring: open.ring, openedAt: open.openedAt },
    lastRing:
      lastCommit === undefined ? undefined : { round: lastCommit.round, ring: lastCommit.ring, links: ringLinks(lastCommit.ring, lastCommit.reports) },
    peers: input.roster.rows(livePeers(coordinator, job, input.isReducing), now),
    loss: metrics.rounds.map((r) => [r.round, r.loss]),
    accuracy: metrics.evals,
    recentRounds: metrics.rounds.slice(-RECENT_ROUNDS),
    events: log.recent(RECENT_EVENTS),
    stateRound: input.storeRound,
  };
}
