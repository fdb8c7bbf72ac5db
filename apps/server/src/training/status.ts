import type { CommittedRound, Coordinator, Member } from "@crowdtrain/coordination";
import { planMembers, roundSamples, type Job, type PeerStatus, type Status } from "@crowdtrain/protocol";
import type { EventLog } from "../cluster/event-log.ts";
import type { Ban } from "../identity/bans.ts";
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
  /** Address bans in force. */
  bans?: readonly Ban[];
  /** Settled spot checks: recent ones and totals. */
  audits?: Status["audits"];
};

/** One member as a status row. */
export function memberRow(m: Readonly<Member>, job: Job, reducing: boolean): PeerStatus {
  return {
    id: m.peerId,
    name: m.name,
    backend: m.backend,
    adapter: m.adapter,
    state: m.state === "training" && reducing ? "reducing" : m.state,
    samplesPerSecond: m.samplesPerSecond,
    share: m.lastLease / roundSamples(job),
    lastRoundMs: m.lastRoundMs,
    lastHash: m.lastHash,
    bytesSent: m.bytesSent,
    bytesReceived: m.bytesReceived,
    strikes: m.strikes,
    audits: { ...m.audits },
    role: m.role,
  };
}

/** The coordinator's members as status rows, in join order: O(members). */
export function livePeers(members: readonly Readonly<Member>[], job: Job, isReducing: (peerId: string) => boolean = () => false): PeerStatus[] {
  return members.map((m) => memberRow(m, job, isReducing(m.peerId)));
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
    coverage: [...s.finishedEpochs],
    ring: open === undefined ? [] : [...planMembers(open.plan)],
    openRound: open === undefined ? undefined : { round: open.round, attempt: open.attempt, ring: [...planMembers(open.plan)], openedAt: open.openedAt },
    lastRing: lastCommit === undefined ? undefined : lastRing(lastCommit),
    peers: input.roster.rows(livePeers(s.members, job, input.isReducing), now),
    loss: metrics.rounds.map((r) => [r.round, r.loss]),
    accuracy: metrics.evals,
    recentRounds: metrics.rounds.slice(-RECENT_ROUNDS),
    events: log.recent(RECENT_EVENTS),
    stateRound: input.storeRound,
    bans: (input.bans ?? []).map((ban) => ({ peer: ban.peerId, reason: ban.reason, until: ban.until })),
    audits: input.audits === undefined ? undefined : { ...input.audits, recent: [...input.audits.recent] },
  };
}

function lastRing(commit: CommittedRound): NonNullable<Status["lastRing"]> {
  const ring = [...planMembers(commit.plan)];
  return { round: commit.round, ring, links: ringLinks(ring, commit.reports) };
}
