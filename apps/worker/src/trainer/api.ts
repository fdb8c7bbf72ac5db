import type { FailureCode, Job, PipelinePlan } from "@crowdtrain/protocol";

/**
 * The trainer owns the model, its weights and the optimizer state of one worker tab. It runs in a
 * dedicated Web Worker when WebGPU is available there (so the page stays responsive and a
 * background tab keeps training), else on the page; the page talks to it only through this API.
 *
 * Attempt protocol: computeGradient -> (all-reduce on the page) -> applyUpdate, which keeps the new
 * weights as *pending*; commit adopts them, discard drops them. Nothing is adopted before the
 * coordinator commits, so an aborted round leaves no trace.
 */
export type TrainerInit = {
  job: Job;
  /** Base URL of the job's dataset (manifest.json and shards). */
  datasetUrl: string;
};

export type BackendReport = { backend: string; tried: { name: string; ok: boolean; reason: string }[] };

export type GradientReport = {
  gradient: Float32Array;
  loss: number;
  samples: number;
  /** Building the batch and recording + dispatching forward and backward. */
  computeMs: number;
  /** Waiting for the flat gradient to come back (on a GPU this includes finishing the queued work). */
  readbackMs: number;
  /** A pipeline stage: the time it computed within computeMs (its span); the rest it waited. */
  busyMs?: number;
};

/** `layerHashes`: a pipeline stage's, which `hash` (its stage hash) combines. */
export type UpdateReport = { hash: string; updateMs: number; layerHashes?: string[] };

/** A pipeline round's share of this tab: stage `stage` of replica `replica`, on the replica's lease. */
export type StageTask = { attempt: number; lease: number[]; plan: PipelinePlan; stage: number; replica: number };

/**
 * How a stage's round ended: its gradient (of its layers; `loss` is the replica's only on the last
 * stage, else 0), or a failure the way pipeline rounds fail (a neighbour gone, silent, or sending
 * what the inbox refused; the round aborted), which the coordinator hears with its suspect.
 */
export type StageOutcome = { ok: true; report: GradientReport & { activationBytes: number } } | { ok: false; code: FailureCode; suspect: string | undefined; message: string };

export type WeightsBasis = "committed" | "pending";

export type StateReport = { round: number; hash: string };

/** Outputs of a predict call: rows x classes, the committed round whose weights answered, and the time. */
export type PredictReport = { outputs: Float32Array; round: number; ms: number };

export interface Trainer {
  /** Picks the first working TF.js backend of `backends` (best first) and says why others failed. */
  selectBackend(backends: string[]): Promise<BackendReport>;
  /** Builds the job's model and loads its training data. */
  init(init: TrainerInit): Promise<{ weightCount: number }>;
  /** Replaces weights and optimizer state with an encoded model state (see @crowdtrain/training state.ts). */
  loadState(bytes: ArrayBuffer): Promise<StateReport>;
  /**
   * The lease's contribution: its gradient ("sync") or its inner steps' pseudo-gradient ("diloco").
   * From the committed weights, or (`basis: "pending"`, a lease ahead) from the weights pending for
   * the last update, which the next round starts from once that update commits.
   */
  computeGradient(lease: number[], basis?: WeightsBasis): Promise<GradientReport>;
  /**
   * A pipeline round's stage: its layers' forward and backward for each micro-batch, activations to
   * and from its neighbours through `port` (the page's ActivationBridge), following the plan's
   * schedule. Its layers must be those whose committed state this tab holds (the coordinator sees to
   * it); applyUpdate then steps only them.
   */
  computeStage(task: StageTask, port: MessagePort): Promise<StageOutcome>;
  /** Applies the optimizer to a copy of the weights; keeps it pending for `attempt`. */
  applyUpdate(attempt: number, mean: Float32Array): Promise<UpdateReport>;
  /**
   * Adopts the pending weights and writes them to the device (`uploadMs`). A pipeline stage's round
   * commits under the round's `hash`, which combines every stage's and which it cannot compute alone.
   */
  commit(attempt: number, round: number, hash?: string): Promise<StateReport & { uploadMs: number }>;
  discard(attempt: number): Promise<void>;
  /** The committed state, encoded, for upload to the server. */
  exportState(): Promise<ArrayBuffer>;
  /** The state pending for `attempt` as it will be once round `round` commits, for the server to check first. */
  exportPending(attempt: number, round: number): Promise<ArrayBuffer>;
  /** The committed weights' outputs for `rows` flattened inputs (serving; never pending weights). */
  predict(inputs: Float32Array, rows: number): Promise<PredictReport>;
  dispose(): Promise<void>;
}
