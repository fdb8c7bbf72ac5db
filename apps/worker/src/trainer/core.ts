import type * as tf from "@tensorflow/tfjs";
import { committedOptimizer, innerSteps, type Job } from "@crowdtrain/protocol";
import {
  batchTensors,
  buildModel,
  readGradient,
  recordGradient,
  runInnerSteps,
  weightCount,
  createOptimizer,
  decodeState,
  encodeState,
  hashState,
  stateProblem,
  writeWeights,
  predictRows,
  type Dataset,
  type DatasetManifest,
  type Optimizer,
  type OptimizerState,
} from "@crowdtrain/training";
import { chooseBackend } from "@crowdtrain/training/browser";
import { fetchTrainSplit } from "./dataset-http.ts";
import type { BackendReport, GradientReport, PredictReport, StateReport, Trainer, TrainerInit, UpdateReport, WeightsBasis } from "./api.ts";

type Loaded = { job: Job; manifest: DatasetManifest; train: Dataset; model: tf.LayersModel; optimizer: Optimizer };
type Pending = { attempt: number; weights: Float32Array; optimizerBefore: OptimizerState; hash: string };

/**
 * The Trainer itself, usable directly on the page or behind the Web Worker RPC (worker-entry.ts).
 * Weights live twice: on the device (for forward/backward) and as the committed Float32Array (for
 * the deterministic optimizer and the hash); they are written to the device when a computation
 * needs other weights than those there (a lease ahead starts from the pending ones) and on
 * commit/load, never twice the same array.
 */
export class TrainerCore implements Trainer {
  private loaded: Loaded | undefined;
  private weights: Float32Array = new Float32Array(0);
  private round = 0;
  private hash = "";
  private pending: Pending | undefined;
  /** The weights array last written to the device (by identity), so the same array is not uploaded twice. */
  private onDevice: Float32Array | undefined;

  async selectBackend(backends: string[]): Promise<BackendReport> {
    return chooseBackend(backends);
  }

  async init({ job, datasetUrl }: TrainerInit): Promise<{ weightCount: number }> {
    const { manifest, train } = await fetchTrainSplit(datasetUrl);
    this.loaded?.model.dispose();
    const model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
    const size = weightCount(model);
    this.loaded = { job, manifest, train, model, optimizer: createOptimizer(committedOptimizer(job), size) };
    return { weightCount: size };
  }

  async loadState(bytes: ArrayBuffer): Promise<StateReport> {
    const loaded = this.need();
    const state = decodeState(new Uint8Array(bytes), loaded.optimizer.size);
    const problem = stateProblem(state);
    if (problem !== undefined) throw new Error(`state of round ${state.round} is corrupt: ${problem}`);
    const hash = state.hash;
    loaded.optimizer.restore(state.optimizer);
    this.weights = state.weights;
    this.toDevice(this.weights);
    this.round = state.round;
    this.hash = hash;
    this.pending = undefined;
    return { round: this.round, hash };
  }

  async computeGradient(lease: number[], basis: WeightsBasis = "committed"): Promise<GradientReport> {
    const { job, model, manifest, train } = this.need();
    const started = performance.now();
    const start = basis === "pending" ? this.pendingWeights() : this.weights;
    if (job.algorithm.kind === "diloco") {
      // The inner steps write `start` and move the device weights; nothing else relies on them, so a
      // discard is free, and the next computation or commit writes what it needs.
      this.onDevice = undefined;
      const result = await runInnerSteps({ model, optimizer: job.optimizer, train, manifest, start, lease, steps: innerSteps(job) });
      return { gradient: result.pseudoGradient, loss: result.loss, samples: result.samples, computeMs: performance.now() - started, readbackMs: 0 };
    }
    this.toDevice(start);
    const { xs, ys } = batchTensors(train, lease, manifest.inputShape, manifest.classes);
    try {
      const recorded = recordGradient(model, xs, ys);
      const dispatched = performance.now();
      const result = await readGradient(recorded);
      return { ...result, computeMs: dispatched - started, readbackMs: performance.now() - dispatched };
    } finally {
      xs.dispose();
      ys.dispose();
    }
  }

  async applyUpdate(attempt: number, mean: Float32Array): Promise<UpdateReport> {
    const { optimizer } = this.need();
    const started = performance.now();
    if (this.pending !== undefined) optimizer.restore(this.pending.optimizerBefore);
    const optimizerBefore = optimizer.state();
    const weights = this.weights.slice();
    optimizer.step(weights, mean);
    const hash = hashState(weights, optimizer.state());
    this.pending = { attempt, weights, optimizerBefore, hash };
    return { hash, updateMs: performance.now() - started };
  }

  async commit(attempt: number, round: number): Promise<StateReport & { uploadMs: number }> {
    const pending = this.pending;
    if (pending?.attempt !== attempt) throw new Error(`commit of attempt ${attempt}, but ${pending?.attempt ?? "none"} is pending`);
    this.pending = undefined;
    this.weights = pending.weights;
    this.hash = pending.hash;
    this.round = round;
    const started = performance.now();
    // DiLoCo's inner steps write their start weights themselves: uploading these now would be done twice.
    // Sync: already there when the next lease was computed ahead on these very (then pending) weights.
    if (this.need().job.algorithm.kind !== "diloco") this.toDevice(this.weights);
    return { round, hash: this.hash, uploadMs: performance.now() - started };
  }

  async discard(attempt: number): Promise<void> {
    if (this.pending?.attempt !== attempt) return;
    this.need().optimizer.restore(this.pending.optimizerBefore);
    this.pending = undefined;
  }

  async exportState(): Promise<ArrayBuffer> {
    const { optimizer } = this.need();
    // The optimizer holds the pending step's state while one is pending: export the committed one.
    const optimizerState = this.pending?.optimizerBefore ?? optimizer.state();
    return encodeState({ round: this.round, hash: this.hash, weights: this.weights, optimizer: optimizerState }).buffer;
  }

  async exportPending(attempt: number, round: number): Promise<ArrayBuffer> {
    const pending = this.pending;
    if (pending?.attempt !== attempt) throw new Error(`export of attempt ${attempt}, but ${pending?.attempt ?? "none"} is pending`);
    // While an update is pending the optimizer holds its state after that update.
    return encodeState({ round, hash: pending.hash, weights: pending.weights, optimizer: this.need().optimizer.state() }).buffer;
  }

  async predict(inputs: Float32Array, rows: number): Promise<PredictReport> {
    const { model, manifest } = this.need();
    const started = performance.now();
    // Serving tabs run no rounds, but a tab moved from training may hold a lease's weights there.
    this.toDevice(this.weights);
    const outputs = await predictRows(model, inputs, rows, manifest.inputShape);
    return { outputs, round: this.round, ms: performance.now() - started };
  }

  async dispose(): Promise<void> {
    this.loaded?.model.dispose();
    this.loaded = undefined;
  }

  private pendingWeights(): Float32Array {
    if (this.pending === undefined) throw new Error("a lease ahead needs a pending update to start from, and none is pending");
    return this.pending.weights;
  }

  /** Writes `weights` to the model unless that very array is there already. */
  private toDevice(weights: Float32Array): void {
    if (this.onDevice === weights) return;
    writeWeights(this.need().model, weights);
    this.onDevice = weights;
  }

  private need(): Loaded {
    if (this.loaded === undefined) throw new Error("trainer used before init()");
    return this.loaded;
  }
}
