import type { Aggregation, AuditRecord, Codec, Topology, Backend, MemberRole, PipelinePlan, Plan, ResolvedCoordinatorMessage, RoundTimings } from "@crowdtrain/protocol";
import type { StageHeld } from "./pipeline-rounds.ts";

/**
 * A pipeline job's rounds (parallelism.stages above 1), given by the server: the plan of a round
 * from the ready members (it wraps @crowdtrain/pipeline's buildPipelinePlan, which knows the model)
 * and the combination of layer hashes into a state hash (training's combineLayerHashes).
 */
export type PipelineCoordination = {
  plan: (members: readonly { id: string; memoryBytes?: number }[]) => { ok: true; plan: PipelinePlan } | { ok: false; reason: string };
  combine: (layerHashes: readonly string[]) => string;
};

export type CoordinatorConfig = {
  /** Training samples in the dataset; indices 0..trainCount-1 are leased. */
  trainCount: number;
  batchSize: number;
  seed: number;
  maxRounds: number | undefined;
  maxEpochs: number | undefined;
  /** Ready workers needed before the first round opens (later rounds run with whoever is left). */
  minWorkers: number;
  /** Hash of the round-0 state, which the server builds from the job's seed. */
  initialHash: string;
  /**
   * How gradients are combined: "mean" runs a ring; a robust mode runs a direct plan whose shard
   * owners see (and clip) every contribution. Default "mean".
   */
  aggregation?: Aggregation;
  /** The all-reduce's wire format (the job's codec): topk runs on a flat ring. Default "dense". */
  codec?: Codec;
  /** The shape of a mean's all-reduce (the job's topology, plans.ts). Default "auto". */
  topology?: Topology;
  /** A round not committed this long after it opened is aborted; its silent members are suspected. */
  roundDeadlineMs: number;
  /** All-reduce frame payload size, the same for the whole plan. */
  frameBytes: number;
  /**
   * A member that joined (or was knocked back) and is fetching the committed state holds the next
   * round for at most this long, so it can enter instead of chasing a moving target.
   */
  joinGraceMs: number;
  /** After a departure or an abort the next round waits this long, so a burst of departures is one re-plan. */
  replanDelayMs: number;
  /** A member reaching this many strikes is evicted. */
  maxStrikes: number;
  /** One strike is forgiven per this many committed rounds a member takes part in. */
  strikeDecayRounds: number;
  /** An accusation not confirmed within this window (by a second witness, or the suspect leaving) counts against the accuser. */
  accusationWindowMs: number;
  /** The server still lacks a committed round's state this long after asking: another member is asked. */
  stateUploadTimeoutMs: number;
  /**
   * Overlap: every round message also carries the member's lease of the round after it, which the
   * member computes on its pending weights while it waits for the commit. Default true.
   */
  leaseAhead?: boolean;
  /** Probability that a member's contribution to a committed round is audited (the job's spotCheck). Default 0. */
  spotCheck?: number;
  /** An audited member must have uploaded the contribution it committed to within this of the ask (else it fails). Default 30 s. */
  auditTimeoutMs?: number;
  /** Audits in flight at once (the server recomputes each on its CPU). Default 4. */
  maxPendingAudits?: number;
  /** Committed rounds a failed audit can roll back across; the server keeps that many states. Default 32. */
  lineageRounds?: number;
  /** Uniform [0, 1) draws for audits; the server passes a cryptographic source, tests a seeded one. */
  random?: () => number;
  /** Set for a pipeline job: its rounds run R replicas × K stages (pipeline-rounds.ts). */
  pipeline?: PipelineCoordination;
};

/** "serving": a member whose role is "server" answers inference requests and is never in a round. */
export type MemberState = "joining" | "ready" | "training" | "serving";
export type { MemberRole };

export type Member = {
  peerId: string;
  name: string | undefined;
  backend: Backend;
  adapter: string | undefined;
  role: MemberRole;
  joinedAt: number;
  state: MemberState;
  /** Committed round whose state this member holds (set by `ready`, advanced by commits). */
  holds: number | undefined;
  /** Samples per second as the coordinator measured it (lease / time to enter the all-reduce). */
  samplesPerSecond: number | undefined;
  lastRoundMs: number | undefined;
  lastHash: string | undefined;
  lastLease: number;
  bytesSent: number;
  bytesReceived: number;
  strikes: number;
  /** Committed rounds since the last strike was forgiven (see strikeDecayRounds). */
  cleanRounds: number;
  /** Set while the member fetches the committed state; the next round waits up to joinGraceMs for it. */
  syncingSince: number | undefined;
  /** Spot checks of its contributions so far. */
  audits: { passed: number; failed: number };
  /** Memory it lends, in MiB (hello's memoryMiB); undefined: not said. A pipeline plan fits stages to it. */
  memoryMiB: number | undefined;
  /** Pipeline jobs: the stage whose layers' state of `holds` it holds; undefined: the whole state. */
  stage: StageHeld | undefined;
};

export type RoundReport = {
  hash: string;
  samples: number;
  loss: number;
  timings: RoundTimings;
  bytesSent: number;
  bytesReceived: number;
  /** As an owner of a direct plan: the contributors it clipped as outliers. */
  clipped?: readonly string[] | undefined;
  /** A pipeline stage's per-layer hashes, which `hash` combines. */
  layerHashes?: readonly string[] | undefined;
};

/** What a pipeline round adds to an open round. */
export type PipelineRound = {
  plan: PipelinePlan;
  /** Each replica's samples (every stage of a replica computes on them). */
  leases: number[][];
  /** The ring each stage's members average their gradient on. */
  stagePlans: Plan[];
  /** Replica 0's members: each uploads its stage's pending state. */
  uploaders: string[];
  /** The stage hash of each stage's uploaded state, once the server checked it. */
  checked: Map<number, string>;
};

export type OpenRound = {
  attempt: number;
  round: number;
  epoch: number;
  plan: Plan;
  members: ReadonlySet<string>;
  leases: ReadonlyMap<string, readonly number[]>;
  reports: Map<string, RoundReport>;
  /** When each member said it entered the all-reduce: its compute time, measured here. */
  reducingAt: Map<string, number>;
  openedAt: number;
  /** Uploads its pending state at once; a plan of one commits only once the server verified it. */
  uploader: string;
  /** The uploader's pending state, checked by the server (finite, exact size, hash). */
  verifiedHash: string | undefined;
  /** Each member's digest of its contribution, committed before its all-reduce began. */
  digests: Map<string, string>;
  /** When each member began computing its lease: the round's opening, or its report of the round before (a lease ahead). */
  startedAt: Map<string, number>;
  /** Leases of the next round, handed out with this one (`leaseAhead`); back to the queue if this round aborts. */
  next: Map<string, readonly number[]>;
  /** When each member reported: it starts on its lease ahead then. */
  reportedAt: Map<string, number>;
  /** Set for a pipeline round: `plan` is then a ring naming every member, `leases` the replicas' by their first stage. */
  pipeline?: PipelineRound;
};

/** A read-only picture of the open round. */
export type OpenRoundView = Readonly<Omit<OpenRound, "reports" | "reducingAt" | "leases" | "members" | "digests" | "startedAt" | "next" | "reportedAt" | "pipeline">> & {
  members: readonly string[];
  pipeline?: PipelinePlan;
  leases: ReadonlyMap<string, readonly number[]>;
  reported: readonly string[];
};

export type CoordinatorEvent =
  | { type: "join"; peerId: string; name?: string | undefined; backend: Backend; adapter?: string | undefined; role?: MemberRole | undefined; memoryMiB?: number | undefined; now: number }
  | { type: "ready"; peerId: string; round: number; hash: string; now: number }
  | ({ type: "result"; peerId: string; attempt: number; now: number } & RoundReport)
  | { type: "phase"; peerId: string; attempt: number; phase: "computing" | "reducing"; digest?: string | undefined; now: number }
  | { type: "failed"; peerId: string; attempt: number; code: string; suspect: string | undefined; message: string; now: number }
  | { type: "leave"; peerId: string; reason: string; now: number }
  /** The server checked an uploaded state (pending for an open attempt, or a committed round's). */
  | { type: "state-checked"; peerId: string; round: number; attempt: number | undefined; hash: string; problem: string | undefined; now: number }
  /** The server now holds the committed state of `round`. */
  | { type: "state-stored"; round: number; now: number }
  /** The server holds an audited member's whole contribution to `round`: only its verdict settles the audit now. */
  | { type: "audit-received"; peerId: string; round: number; now: number }
  /** The server judged an audited contribution ("inconclusive": it could not recompute, nobody is blamed). */
  | { type: "audit-checked"; peerId: string; round: number; outcome: AuditOutcome; relativeError?: number | undefined; detail: string; now: number }
  | { type: "tick"; now: number }
  | { type: "pause"; now: number }
  | { type: "resume"; now: number }
  | { type: "stop"; reason: string; now: number }
  /** The operator changes the target number of rounds (undefined: no round limit, epochs only). */
  | { type: "set-max-rounds"; rounds: number | undefined; now: number }
  /**
   * The autoscaler moves a member between training and serving. A member in the open round keeps
   * its role until that round commits or aborts (the round is not disturbed); then it changes.
   */
  | { type: "set-role"; peerId: string; role: MemberRole; now: number };

export type CommittedRound = {
  round: number;
  attempt: number;
  epoch: number;
  hash: string;
  plan: Plan;
  samples: number;
  /** Sample-weighted mean of the members' losses before the update. */
  loss: number;
  /** Wall time from opening the round to the last report. */
  roundMs: number;
  /** Each member's report, by member: the round's own map, handed over at the commit (not copied). */
  reports: ReadonlyMap<string, RoundReport>;
  uploader: string;
  /** A pipeline round: its plan and the agreed hash of each stage. */
  pipeline?: { plan: PipelinePlan; stageHashes: string[] };
};

export type EpochCoverage = { epoch: number; samples: number; usedOnce: number; usedTwice: number; unused: number };

export type LogKind =
  | "joined"
  | "role"
  | "left"
  | "aborted"
  | "evicted"
  | "strike"
  /** A member timed out on one the server saw still computing: nobody is struck. */
  | "straggler"
  | "epoch"
  | "done"
  | "paused"
  | "resumed"
  | "target"
  | "upload"
  | "audit"
  | "rollback"
  /** A pipeline plan could not be formed, or members move between stages. */
  | "plan";

/**
 * Why a round was aborted, from a small fixed set (the "aborted" log line carries the details).
 * The server labels its abort counter with it: free text would make every abort its own series.
 */
export type AbortCause =
  /** A member of the plan left or was evicted. */
  | "departure"
  /** A member reported a failure (its own, or one it saw in a neighbour). */
  | "failure"
  /** The round deadline passed without every report (or without a checked state). */
  | "deadline"
  /** The reported hashes split without a majority. */
  | "hash-split"
  /** The uploader's pending state failed the server's check. */
  | "check-failed"
  /** A member reported a sample count other than its lease. */
  | "lease-mismatch"
  /** A member of the plan was named by two witnesses. */
  | "suspected"
  /** A failed spot check rolled the model back. */
  | "rollback"
  /** The job finished (target, epochs, operator) with the round still open. */
  | "stopping";

export type AuditOutcome = AuditRecord["outcome"];
/** One settled spot check, for the dashboard (the status adds when). */
export type AuditVerdict = Omit<AuditRecord, "at">;

export type CoordinatorEffect =
  | { type: "send"; to: string; message: ResolvedCoordinatorMessage }
  | { type: "log"; kind: LogKind; text: string }
  | { type: "committed"; commit: CommittedRound }
  /** The open round was aborted (its leases went back to the queue); the log effect says why in words. */
  | { type: "aborted"; round: number; attempt: number; cause: AbortCause }
  | { type: "epoch-finished"; coverage: EpochCoverage }
  /** A member is gone (left or evicted): its last row, for whoever shows departed peers. */
  | { type: "departed"; member: Readonly<Member>; reason: string }
  /** Close this member's connection and revoke its identity (it was evicted). */
  | { type: "disconnect"; peerId: string; reason: string }
  /** A spot check was settled. */
  | { type: "audited"; verdict: AuditVerdict }
  /**
   * A failed audit undid rounds: round `round` is committed with the state (and hash) of round `to`.
   * The server copies that state under the new round number; every member syncs to it.
   */
  | { type: "rolled-back"; round: number; to: number; hash: string; undone: readonly number[] }
  /** A member's role changed (the `role` message is sent to it too): the serving pool follows. */
  | { type: "role-changed"; peerId: string; role: MemberRole };
