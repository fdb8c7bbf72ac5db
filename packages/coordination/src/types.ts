import type { Backend, CoordinatorMessage, RoundTimings } from "@crowdtrain/protocol";

export type CoordinatorConfig = {
  /** Training samples in the dataset; indices 0..trainCount-1 are leased. */
  trainCount: number;
  batchSize: number;
  seed: number;
  maxRounds: number | undefined;
  maxEpochs: number | undefined;
  /** Ready workers needed before the first round opens (later rounds run with whoever is left). */
  minWorkers: number;
  /** A round not committed this long after it opened is aborted; its silent members are suspected. */
  roundDeadlineMs: number;
  /** All-reduce frame payload size, the same for the whole ring. */
  frameBytes: number;
  /**
   * A member that joined (or was knocked back) and is fetching the committed state holds the next
   * round for at most this long, so it can enter the ring instead of chasing a moving target.
   */
  joinGraceMs: number;
  /** A peer suspected in this many aborted rounds in a row is evicted. */
  maxStrikes: number;
};

export type MemberState = "joining" | "ready" | "training";

export type Member = {
  peerId: string;
  name: string | undefined;
  backend: Backend;
  adapter: string | undefined;
  joinedAt: number;
  state: MemberState;
  /** Committed round whose state this member holds (set by `ready`, advanced by commits). */
  holds: number | undefined;
  samplesPerSecond: number | undefined;
  lastRoundMs: number | undefined;
  lastHash: string | undefined;
  lastLease: number;
  bytesSent: number;
  bytesReceived: number;
  strikes: number;
  /** Set while the member fetches the committed state; the next round waits up to joinGraceMs for it. */
  syncingSince: number | undefined;
};

export type RoundReport = { hash: string; samples: number; loss: number; timings: RoundTimings; bytesSent: number; bytesReceived: number };

export type OpenRound = {
  attempt: number;
  round: number;
  epoch: number;
  ring: string[];
  leases: Map<string, number[]>;
  reports: Map<string, RoundReport>;
  openedAt: number;
};

export type CoordinatorEvent =
  | { type: "join"; peerId: string; name?: string | undefined; backend: Backend; adapter?: string | undefined; lastAttempt?: number | undefined; now: number }
  | { type: "ready"; peerId: string; round: number; hash: string; now: number }
  | ({ type: "result"; peerId: string; attempt: number; now: number } & RoundReport)
  | { type: "failed"; peerId: string; attempt: number; code: string; suspect: string | undefined; message: string; now: number }
  | { type: "leave"; peerId: string; reason: string; now: number }
  | { type: "tick"; now: number }
  | { type: "pause"; now: number }
  | { type: "resume"; now: number }
  | { type: "stop"; reason: string; now: number }
  /** The operator changes the target number of rounds (undefined: no round limit, epochs only). */
  | { type: "set-max-rounds"; rounds: number | undefined; now: number };

export type CommittedRound = {
  round: number;
  attempt: number;
  epoch: number;
  hash: string;
  ring: string[];
  samples: number;
  /** Sample-weighted mean of the members' losses before the update. */
  loss: number;
  /** Wall time from opening the round to the last report. */
  roundMs: number;
  reports: Record<string, RoundReport>;
  uploader: string;
};

export type EpochCoverage = { epoch: number; samples: number; usedOnce: number; usedTwice: number; unused: number };

export type CoordinatorEffect =
  | { type: "send"; to: string; message: CoordinatorMessage }
  | { type: "log"; kind: "joined" | "left" | "aborted" | "evicted" | "epoch" | "done" | "paused" | "resumed" | "target"; text: string }
  | { type: "committed"; commit: CommittedRound }
  | { type: "epoch-finished"; coverage: EpochCoverage };
