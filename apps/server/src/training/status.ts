import type { CommittedRound, Coordinator, Member } from "@crowdtrain/coordination";
import { peerTotals, planMembers, roundSamples, type Job, type PeerStatus, type Status } from "@crowdtrain/protocol";
import { lastPipeline } from "./pipeline-status.ts";
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
/**
 * At most this many peer rows and ring members go into /api/status and every SSE snapshot. A
 * swarm of 1,000 sent them all (532 KB a snapshot, measured with `npm run bench:load`); the
 * dashboard shows the peers needing attention, the totals, and pages the rest (GET /api/peers).
 */
export const STATUS_PEER_ROWS = 200;
export const STATUS_RING_MEMBERS = 200;
/** Departed peers among the STATUS_PEER_ROWS when the swarm is larger (the newest departures). */
const STATUS_GONE_ROWS = 20;

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
  /** The serving pool's numbers (absent: serving off). */
  serving?: Status["serving"];
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
  const openRing = open === undefined ? [] : planMembers(open.plan);
  const rows = input.roster.rows(livePeers(s.members, job, input.isReducing), now);
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
    ring: openRing.slice(0, STATUS_RING_MEMBERS),
    openRound: open === undefined ? undefined : { round: open.round, attempt: open.attempt, ring: openRing.slice(0, STATUS_RING_MEMBERS), ringSize: openRing.length, openedAt: open.openedAt },
    lastRing: lastCommit === undefined ? undefined : lastRing(lastCommit),
    peers: peerRowsShown(rows),
    peerTotals: peerTotals(rows),
    loss: metrics.rounds.map((r) => [r.round, r.loss]),
    accuracy: metrics.evals,
    recentRounds: metrics.rounds.slice(-RECENT_ROUNDS),
    events: log.recent(RECENT_EVENTS),
    stateRound: input.storeRound,
    bans: (input.bans ?? []).map((ban) => ({ peer: ban.peerId, reason: ban.reason, until: ban.until })),
    audits: input.audits === undefined ? undefined : { ...input.audits, recent: [...input.audits.recent] },
    serving: input.serving,
    ...(job.parallelism.stages > 1
      ? {
          pipeline: {
            ...(open?.pipeline === undefined ? {} : { open: open.pipeline }),
            ...(lastCommit?.pipeline === undefined ? {} : { last: lastPipeline(lastCommit) }),
          },
        }
      : {}),
  };
}

/**
 * The last committed ring: its first STATUS_RING_MEMBERS members and, of a larger ring, its slowest
 * links. Only a flat ring has one outgoing link per member; a torus (rows, columns, attached members)
 * and a direct plan send to several, so their members are listed without per-link throughput.
 */
function lastRing(commit: CommittedRound): NonNullable<Status["lastRing"]> {
  const ring = planMembers(commit.plan);
  const links = commit.plan.kind === "ring" ? ringLinks(ring, commit.reports) : [];
  if (ring.length <= STATUS_RING_MEMBERS) return { round: commit.round, ring: [...ring], links };
  const slowest = links.sort((a, b) => (a.bytesPerSecond ?? Infinity) - (b.bytesPerSecond ?? Infinity)).slice(0, STATUS_RING_MEMBERS);
  return { round: commit.round, ring: ring.slice(0, STATUS_RING_MEMBERS), ringSize: ring.length, links: slowest };
}

/**
 * All rows of a swarm up to STATUS_PEER_ROWS; of a larger one, the live peers needing attention most
 * (struck, failed spot checks, then the slowest: the ones a round waits for), in join order, then
 * the newest departures. Every row stays reachable through GET /api/peers.
 */
export function peerRowsShown(rows: readonly PeerStatus[]): PeerStatus[] {
  if (rows.length <= STATUS_PEER_ROWS) return [...rows];
  const gone = rows.filter((row) => row.state === "gone").slice(0, STATUS_GONE_ROWS);
  const live = rows.filter((row) => row.state !== "gone");
  const attention = live
    .map((row, joinOrder) => ({ row, joinOrder }))
    .sort((a, b) => (b.row.strikes ?? 0) - (a.row.strikes ?? 0) || (b.row.audits?.failed ?? 0) - (a.row.audits?.failed ?? 0) || speed(a.row) - speed(b.row) || a.joinOrder - b.joinOrder)
    .slice(0, STATUS_PEER_ROWS - gone.length)
    .sort((a, b) => a.joinOrder - b.joinOrder);
  return [...attention.map((a) => a.row), ...gone];
}

/** Unmeasured peers (new) sort after every measured one: a slow measured peer needs attention first. */
const speed = (row: PeerStatus): number => row.samplesPerSecond ?? Number.MAX_VALUE;
