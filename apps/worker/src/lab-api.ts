// The lab page's API on `window.crowdtrainLab`: primitives that e2e tests and benchmarks drive.
// Types only, so e2e code can import it (`import type`) without bundling the lab.

export interface AdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for a software adapter such as SwiftShader. */
  isFallbackAdapter: boolean;
}

export interface WebGpuCheck {
  /** tfjs backend that ran the GPU half; "webgpu" when all went well. */
  backend: string;
  adapter: AdapterReport;
  /** relu(A·B) has this many elements; both backends computed all of them. */
  count: number;
  gpuSum: number;
  cpuSum: number;
  /** Largest |gpu - cpu| over the elements of relu(A·B). */
  maxAbsDiff: number;
  /** Largest |cpu| element, to judge maxAbsDiff against. */
  maxAbs: number;
  /** tf.memory().numTensors after minus before: 0 unless tensors leak. */
  leakedTensors: number;
  gpuMs: number;
}

export interface SendReport {
  bytes: number;
  chunks: number;
  /** From the first send to an empty send buffer. */
  ms: number;
}

export interface ReceiveReport {
  /** Every byte equals the sender's pattern for the same seed. */
  intact: boolean;
  bytes: number;
  /** First byte that differs, or null when intact. */
  firstMismatch: number | null;
  /** From the call to the last byte. */
  ms: number;
}

/** One all-reduce round as a page saw it; failures are data, not exceptions. */
export type ArRunArgs = {
  attempt: number;
  ring: string[];
  seed: number;
  length: number;
  samples: number;
  startAt?: number;
  /** Run a torus instead of the flat ring: `ring` row by row, `columns` a row, the rest attached (one per row). */
  columns?: number;
  /** Run a grid of groups instead: `ring` in mixed-radix order over `dims`, the rest attached (one per dimension-0 group). */
  dims?: number[];
};

export type AllReduceRun =
  | { ok: true; ms: number; hash: string; head: number[]; totalSamples: number; bytesSent: number; framesSent: number }
  | { ok: false; ms: number; error: { code: string; attempt: number; suspect: string | undefined; message: string } };

export interface BlastReport {
  bytes: number;
  ms: number;
}

export interface AllReduceLabOptions {
  frameBytes?: number;
  progressTimeoutMs?: number;
  ringStartTimeoutMs?: number;
  roundTimeoutMs?: number;
  highWaterMarkBytes?: number;
  lowWaterMarkBytes?: number;
}

export interface StepBenchReport {
  backend: string;
  weights: number;
  /** Our step: gradient recorded, read back as one Float32Array, JS Adam, weights written back. */
  oursMs: number[];
  /** Plain TF.js: optimizer.minimize on the device, then the loss read back. */
  plainMs: number[];
}

export interface PlainTrainArgs {
  /** A job as in a job file (parsed on the page): model, optimizer, batchSize and seed are used. */
  job: unknown;
  backend: string;
  /** Evaluate on the test split every this many steps (the server's evalEveryRounds for a sync job). */
  evalEverySteps: number;
  targetAccuracy: number;
  /** Stops (after one last evaluation) once training has run this long without reaching the target. */
  maxMs: number;
}

export interface PlainTrainReport {
  backend: string;
  /** Step whose evaluation first reached the target, or null. */
  stepsToTarget: number | null;
  /** Time in training steps up to that step, evaluations excluded (the server evaluates off the tabs). */
  trainMsToTarget: number | null;
  /** From the first step to that evaluation's end, evaluations included. */
  wallMsToTarget: number | null;
  /** All evaluations together. */
  evalMs: number;
  finalAccuracy: number;
  evals: { step: number; accuracy: number; trainMs: number; wallMs: number }[];
}

export interface PlainPredictArgs {
  /** A job as in a job file: its model and seed are used. */
  job: unknown;
  backend: string;
  /** Rows per predict call. */
  batch: number;
  /** How long to call predict back to back (after a warm-up). */
  seconds: number;
}

export interface PlainPredictReport {
  backend: string;
  batch: number;
  calls: number;
  rowsPerSecond: number;
  msPerCall: number;
}

/** One tab's part in the pipeline benchmark: stage `stage` of the replica `chain`. */
export interface PipeRunArgs {
  /** A job's model (parsed on the page). */
  model: unknown;
  inputShape: number[];
  classes: number;
  backend: string;
  /** The model's stages as layer ranges (packages/pipeline partitionLayers). */
  cuts: { from: number; to: number }[];
  stage: number;
  /** This replica's members, stage by stage. */
  chain: string[];
  /** The members holding this stage in every replica (this one included): its gradient's all-reduce ring. */
  replicaPeers: string[];
  /** Rows of this replica's batch. */
  rows: number;
  microBatches: number;
  schedule: "gpipe" | "1f1b";
  /** Attempt id of the first round (then +1 a round); larger than any this tab ran before. */
  attempt: number;
  /** Date.now() at which each round starts, the same on every tab. */
  startAts: number[];
}

/** One pipeline round as one stage saw it; times are wall-clock ms (performance.timeOrigin + now). */
export interface PipeRound {
  backend: string;
  /** When the stage computed, and what: a micro-batch's forward or backward, or the gradient's read-back. */
  busy: [number, number, "forward" | "backward" | "gradient"][];
  start: number;
  /** The stage's backward pass (and gradient read-back) done. */
  end: number;
  /** Its gradient averaged with the other replicas' (end when there is one replica). */
  reducedAt: number;
  reduceMs: number;
  activationBytes: number;
  gradientBytes: number;
  gradientLength: number;
  loss: number | null;
}

/** What a dishonest lab volunteer does to its gradient (see lab/dishonest.ts). */
export type LabAttack = "scale" | "sign-flip" | "huge" | "noise" | "zero" | "claim" | "wrong-hash" | "accuse";

/** A failing lab volunteer's status (lab/failing.ts); `committed`: [round, hash] of the rounds it took part in, since its last start. */
export type LabFailingStatus = { phase: string; peerId: string | undefined; stopReason: string | undefined; lastError: string | undefined; restarts: number; roundsDone: number; committed: [number, string][] };

export interface CrowdtrainLab {
  /** Joins the page's server's job as a volunteer that applies `attack` to every gradient it sends. */
  labDishonest(args: { attack: LabAttack; backends: string[]; name?: string }): Promise<void>;
  labDishonestStatus(): { phase: string; peerId: string | undefined; stopReason: string | undefined } | undefined;
  /** Joins the job as a volunteer whose trainer fails at its `failAtGradient`-th gradient, once (a GPU device lost). */
  labFailing(args: { backends: string[]; failAtGradient: number; name?: string; forcePage?: boolean; loseDevice?: boolean }): Promise<void>;
  labFailingStatus(): LabFailingStatus | undefined;
  /** Times our training step against plain TF.js on the same model, batch and backend. */
  trainStepBench(args: { backend: string; hidden: number[]; batch: number; steps: number; warmup: number }): Promise<StepBenchReport>;
  /** Plain TF.js training of `job`'s model in this tab until the test accuracy reaches the target (or maxMs). */
  plainTrainTo(args: PlainTrainArgs): Promise<PlainTrainReport>;
  /** Plain TF.js predict of `job`'s model in this tab, back to back: the serving baseline. */
  plainPredict(args: PlainPredictArgs): Promise<PlainPredictReport>;
  /** Opens a PeerJS peer with the p2p Transport and an AllReducer; resolves with the peer id. */
  arOpen(options?: AllReduceLabOptions): Promise<string>;
  /** Opens the data connections to these peers ahead of a round. */
  arConnect(peers: string[]): Promise<void>;
  arRun(args: ArRunArgs): Promise<AllReduceRun>;
  arBlast(to: string, bytes: number, frameBytes: number): Promise<void>;
  /** Starts counting blast bytes from `from`; call before the sender starts. */
  arListenBlast(from: string, bytes: number, timeoutMs: number): void;
  /** Resolves when the bytes announced to arListenBlast have arrived. */
  arBlastDone(): Promise<BlastReport>;
  arProgress(): { framesReceived: number; bytesReceived: number };
  arClose(): void;
  /** Opens a PeerJS peer with the p2p transport for a pipeline stage; resolves with the peer id. */
  pipeOpen(): Promise<string>;
  pipeConnect(peers: string[]): Promise<void>;
  /** Runs this tab's stage through the given rounds (activations over p2p, then the stage's all-reduce). */
  pipeRun(args: PipeRunArgs): Promise<PipeRound[]>;
  pipeClose(): void;
  /** Throws when WebGPU or an adapter is missing; otherwise runs tfjs on webgpu and cpu and compares. */
  webgpuCheck(): Promise<WebGpuCheck>;
  /** Registers with our own PeerJS server; resolves with this page's peer id. */
  peerOpen(): Promise<string>;
  /** Opens a reliable, raw-binary data connection to a peer that has called peerOpen(). */
  peerConnect(remoteId: string): Promise<void>;
  /** Sends `bytes` bytes of the seeded Float32 pattern over the connection with `remoteId`. */
  sendPattern(remoteId: string, bytes: number, seed: number): Promise<SendReport>;
  /** Reads `bytes` bytes from `fromId` and checks them against the seeded pattern. */
  receivePattern(fromId: string, bytes: number, seed: number, timeoutMs: number): Promise<ReceiveReport>;
  /** Closes every connection and leaves the PeerJS server. */
  peerClose(): void;
}

declare global {
  interface Window {
    crowdtrainLab: CrowdtrainLab;
  }
}
