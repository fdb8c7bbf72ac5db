import type { MemberRole, RoundTimings } from "@crowdtrain/protocol";

/** What the worker page shows about its own part in the training. */
export type SessionPhase = "starting" | "connecting" | "syncing" | "waiting" | "training" | "serving" | "leaving" | "stopped";

export type SessionStatus = {
  phase: SessionPhase;
  peerId: string | undefined;
  /** "trainer" or "server" (answering inference requests; the autoscaler moves tabs between them). */
  role: MemberRole;
  backend: string | undefined;
  backendReasons: string[];
  /** Committed round this tab holds. */
  round: number;
  /** Rounds this tab took part in that committed. */
  roundsDone: number;
  /** Samples this tab computed and averaged (a round aborted after its all-reduce counts too). */
  samplesDone: number;
  /** Samples of the rounds that committed: what this tab contributed to the model. */
  samplesCommitted: number;
  samplesPerSecond: number | undefined;
  /** This tab's share of the last global batch. */
  share: number | undefined;
  /** A pipeline job: the stage this tab computed last, of how many, in which replica. */
  stage: { stage: number; replica: number; of: number } | undefined;
  lastTimings: RoundTimings | undefined;
  lastError: string | undefined;
  stopReason: string | undefined;
  /** The task in flight and when it started (the session's clock): a task that never ends shows here. */
  task: { kind: string; since: number } | undefined;
  /**
   * The latest TRACE_LENGTH things the session heard and did, oldest first ("12034 heard abort
   * a7 r3", "12040 run discard", "12051 ended done"): a tab that stalls says what it last saw.
   */
  trace: string[];
  /** Weights hash of every committed round this tab took part in (the latest COMMITTED_HISTORY). */
  committed: [round: number, hash: string][];
  /** Split of recent rounds this tab computed (the latest COMMITTED_HISTORY), upload = weights to the device. */
  rounds: (RoundTimings & { round: number; uploadMs: number; roundMs: number })[];
};

export const COMMITTED_HISTORY = 1_000;
export const TRACE_LENGTH = 24;

export const initialStatus = (): SessionStatus => ({
  phase: "starting",
  peerId: undefined,
  role: "trainer",
  backend: undefined,
  backendReasons: [],
  round: 0,
  roundsDone: 0,
  samplesDone: 0,
  samplesCommitted: 0,
  samplesPerSecond: undefined,
  share: undefined,
  stage: undefined,
  lastTimings: undefined,
  lastError: undefined,
  stopReason: undefined,
  task: undefined,
  trace: [],
  committed: [],
  rounds: [],
});
