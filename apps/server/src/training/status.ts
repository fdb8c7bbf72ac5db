import type { Coordinator } from "@crowdtrain/coordination";
import type { Job } from "@crowdtrain/protocol";
import type { ClusterEvent, EventLog } from "../cluster/event-log.ts";
import type { EvalPoint } from "./evaluator.ts";
import type { Metrics, RoundPoint } from "./metrics.ts";

/** How many recent rounds and events /api/status carries; the full curves come as compact pairs. */
const RECENT_ROUNDS = 50;
const RECENT_EVENTS = 100;

export type PeerStatus = {
  id: string;
  name: string | undefined;
  backend: string;
  adapter: string | undefined;
  state: string;
  samplesPerSecond: number | undefined;
  share: number;
  lastRoundMs: number | undefined;
  lastHash: string | undefined;
  bytesSent: number;
  bytesReceived: number;
};

export type Status = {
  job: Job;
  status: string;
  round: number;
  epoch: number;
  samplesSeen: number;
  epochProgress: { used: number; total: number };
  coverage: { epoch: number; samples: number; usedOnce: number; usedTwice: number; unused: number }[];
  ring: string[];
  peers: PeerStatus[];
  loss: [round: number, loss: number][];
  accuracy: EvalPoint[];
  recentRounds: RoundPoint[];
  events: ClusterEvent[];
  stateRound: number;
};

export function buildStatus(input: { job: Job; coordinator: Coordinator; metrics: Metrics; log: EventLog; storeRound: number }): Status {
  const { job, coordinator, metrics, log } = input;
  const s = coordinator.state;
  return {
    job,
    status: s.status,
    round: s.committedRound,
    epoch: s.epoch,
    samplesSeen: metrics.samplesSeen,
    epochProgress: s.epochProgress,
    coverage: s.finishedEpochs,
    ring: s.current?.ring ?? [],
    peers: s.members.map((m) => ({
      id: m.peerId,
      name: m.name,
      backend: m.backend,
      adapter: m.adapter,
      state: m.state,
      samplesPerSecond: m.samplesPerSecond,
      share: m.lastLease / job.batchSize,
      lastRoundMs: m.lastRoundMs,
      lastHash: m.lastHash,
      bytesSent: m.bytesSent,
      bytesReceived: m.bytesReceived,
    })),
    loss: metrics.rounds.map((r) => [r.round, r.loss]),
    accuracy: metrics.evals,
    recentRounds: metrics.rounds.slice(-RECENT_ROUNDS),
    events: log.recent(RECENT_EVENTS),
    stateRound: input.storeRound,
  };
}
