import type { FailureCode, Identity, Job, PipelinePlan, Plan, WorkerMessage } from "@crowdtrain/protocol";
import type { GradientReport } from "../trainer/api.ts";

/**
 * The session machine's vocabulary with the outside world. A Task is one piece of I/O or trainer
 * work the driver carries out (one at a time: the trainer is a single resource); it ends with a
 * TaskResult fed back to the machine. Everything else the machine wants done is a Command.
 */
export type Task =
  /** A new connection's identity: replace the peer link, (re)build the model, fetch the committed state. */
  | { kind: "welcome"; identity: Identity; job: Job; round: number }
  /** Fetch the committed state of `round` and load it into the trainer. */
  | { kind: "sync"; round: number }
  /**
   * Compute a lease's contribution. `ahead`: the lease of the round after `attempt`, computed on
   * the weights pending for `attempt` while its commit is awaited (overlap).
   */
  | { kind: "compute"; attempt: number; lease: number[]; ahead?: boolean; stage?: StageOfRound }
  | { kind: "reduce"; attempt: number; plan: Plan; gradient: Float32Array; samples: number; frameBytes: number }
  | { kind: "update"; attempt: number; mean: Float32Array }
  /** `hash`: the round's, which a pipeline stage adopts (it cannot compute it alone). */
  | { kind: "commit"; attempt: number; round: number; hash: string }
  | { kind: "discard"; attempt: number }
  /** Encode our pending state of `attempt` (we are the round's uploader), or the committed one, for upload. */
  | { kind: "export-state"; round: number; attempt: number | undefined };

/** A pipeline round: the plan, and where this tab sits in it (stage `stage` of replica `replica`). */
export type StageOfRound = { plan: PipelinePlan; stage: number; replica: number };

export type UploadAuth = { peerId: string; sessionToken: string };

/** How a task ended. An unexpected throw is `failed` (fatal unless the task is an upload). */
export type TaskResult =
  | { kind: "synced"; round: number; hash: string }
  | { kind: "computed"; attempt: number; report: GradientReport; ahead?: boolean }
  /** `residual`: what a lossy codec (topk) left unsent of our contribution, for error feedback. */
  | { kind: "reduced"; attempt: number; mean: Float32Array; bytesSent: number; bytesReceived: number; clipped: string[] | undefined; residual?: Float32Array }
  /** The all-reduce failed the way all-reduces fail (AllReduceError), not a bug. */
  | { kind: "reduce-failed"; attempt: number; code: FailureCode; suspect: string | undefined; message: string }
  /** The stage of a pipeline round failed the way they fail (a neighbour gone, silent or misbehaving; an abort). */
  | { kind: "stage-failed"; attempt: number; code: FailureCode; suspect: string | undefined; message: string }
  | { kind: "updated"; attempt: number; hash: string; updateMs: number; layerHashes?: string[] }
  | { kind: "committed"; attempt: number; round: number; hash: string; uploadMs: number }
  | { kind: "exported"; round: number; bytes: ArrayBuffer }
  | { kind: "done" }
  /** `trainer`: the trainer's call failed (a GPU device lost...), not the network or the peer link. */
  | { kind: "failed"; task: Task["kind"]; error: string; trainer: boolean };

export type Command =
  | { type: "send"; message: WorkerMessage }
  | { type: "run"; task: Task }
  /** Cut the running all-reduce of `attempt` short (the coordinator aborted it, or we lost it). */
  | { type: "abort-reduce"; attempt: number; reason: string }
  /**
   * Uploads that run beside the tasks, not as one: the trainer is free meanwhile, so the next round
   * never waits for the network. A failure comes back as the `upload-failed` input.
   */
  | { type: "upload-state"; round: number; bytes: ArrayBuffer; auth: UploadAuth }
  | { type: "upload-contribution"; round: number; gradient: Float32Array; auth: UploadAuth }
  /** This connection's identity is gone: close its peer link (the next welcome opens a new one). */
  | { type: "close-link" }
  /**
   * Serve inference requests with the trainer's weights (`identity`: the serve socket's), or stop
   * serving (requests this tab holds are retried by the server on another tab).
   */
  | { type: "serve"; identity: Identity }
  | { type: "stop-serving" }
  /**
   * The session is over: close the connection and the link for good. `restartable`: this tab's own
   * machinery failed (a trainer task, a GPU device lost, an update that diverged from the commit),
   * so a fresh trainer in a new session may carry on; a stop by the server or the volunteer is final.
   */
  | { type: "stop"; reason: string; restartable?: true }
  /**
   * The trainer failed after this member reported an attempt: the session stays connected for that
   * attempt's commit and the spot check it may bring (SessionMachine's `leaving`), and the driver
   * feeds `leave-now` if neither has come within its timeout.
   */
  | { type: "leaving"; attempt: number };
