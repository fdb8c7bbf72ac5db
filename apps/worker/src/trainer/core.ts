import type * as tf from "@tensorflow/tfjs";
import { committedOptimizer, innerSteps, type Job } from "@crowdtrain/protocol";
import { stageState } from "@crowdtrain/pipeline";
import {
  batchTensors,
  buildModel,
  combineLayerHashes,
  jobStateHasher,
  layerHashes,
  modelLayers,
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
  type LayerInfo,
  type Optimizer,
  type OptimizerState,
  type StateHasher,
} from "@crowdtrain/training";
import { chooseBackend } from "@crowdtrain/training/browser";
import { fetchTrainSplit } from "./dataset-http.ts";
import type { BackendReport, GradientReport, PredictReport, StageOutcome, StageTask, StateReport, Trainer, TrainerInit, UpdateReport, WeightsBasis } from "./api.ts";
import { runStage, sliceOf, StageHolder } from "./stage-round.ts";

/**
 * A data-parallel job holds the whole model; a pipeline job (stages above 1) only the stage it
 * computes (`stages`) on its device, and on the CPU side the whole state it synced until its first
 * commit, then only its stage's (`TrainerCore.held`). `size`: the whole model's weight count.
 */
type Loaded = { job: Job; manifest: DatasetManifest; train: Dataset; model: tf.LayersModel | undefined; optimizer: Optimizer; size: number; layers: LayerInfo[]; hashOf: StateHasher; stages: StageHolder | undefined };
/**
 * `stage`: a pipeline round's stage, whose part alone was stepped (and is uploaded) by its own
 * optimizer, which becomes the trainer's at the commit (the trainer's is untouched until then).
 */
type Pending = { attempt: number; weights: Float32Array; optimizerBefore: OptimizerState; hash: string; stage?: { task: StageTask; slice: HeldStage; optimizer: Optimizer; part: { weights: Float32Array; optimizer: OptimizerState } } };
/** The stage a pipeline tab holds alone after a commit: its layers [from, to), at `offset` in the whole weights. */
type HeldStage = { offset: number; length: number; from: number; to: number };

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
  /** The pipeline stage this tab computed last (its update steps that stage). */
  private stageTask: StageTask | undefined;
  /** A pipeline tab after a commit: the stage whose committed state (weights, optimizer) it holds alone. */
  private held: HeldStage | undefined;
  /** The weights array last written to the device (by identity), so the same array is not uploaded twice. */
  private onDevice: Float32Array | undefined;

  async selectBackend(backends: string[]): Promise<BackendReport> {
    return chooseBackend(backends);
  }

  async init({ job, datasetUrl }: TrainerInit): Promise<{ weightCount: number }> {
    const { manifest, train } = await fetchTrainSplit(datasetUrl);
    this.release();
    const layers = modelLayers(job.model, manifest.inputShape, manifest.classes);
    const pipelined = job.parallelism.stages > 1;
    const model = pipelined ? undefined : buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
    const size = model === undefined ? layers.reduce((sum, layer) => sum + layer.params, 0) : weightCount(model);
    const stages = pipelined ? new StageHolder(layers, job.seed) : undefined;
    const hashOf = jobStateHasher(job, manifest.inputShape, manifest.classes);
    this.loaded = { job, manifest, train, model, optimizer: createOptimizer(committedOptimizer(job), size), size, layers, hashOf, stages };
    this.held = undefined;
    return { weightCount: size };
  }

  async loadState(bytes: ArrayBuffer): Promise<StateReport> {
    const loaded = this.need();
    // A pipeline tab that held one stage takes the whole state again (it may be given any stage).
    if (this.held !== undefined) loaded.optimizer = createOptimizer(committedOptimizer(loaded.job), loaded.size);
    this.held = undefined;
    const state = decodeState(new Uint8Array(bytes), loaded.size);
    const problem = stateProblem(state, loaded.hashOf);
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
    const { job, manifest, train } = this.need();
    const model = this.wholeModel();
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

  async computeStage(task: StageTask, port: MessagePort): Promise<StageOutcome> {
    const { stages, layers, train, manifest } = this.need();
    if (stages === undefined) {
      port.close();
      throw new Error("a pipeline round for a job of one stage");
    }
    const slice = sliceOf(layers, task);
    const held = this.held;
    if (held !== undefined && (held.offset !== slice.offset || held.length !== slice.length)) {
      port.close();
      throw new Error(`this tab holds layers [${held.from}, ${held.to}) of the committed state, but round ${task.attempt} gives it stage ${task.stage}: it must sync first`);
    }
    this.stageTask = task;
    const stageWeights = held === undefined ? this.weights.subarray(slice.offset, slice.offset + slice.length) : this.weights;
    return runStage({ holder: stages, layers, train, manifest, stageWeights, task, port });
  }

  async applyUpdate(attempt: number, mean: Float32Array): Promise<UpdateReport> {
    const { optimizer } = this.need();
    const started = performance.now();
    if (this.pending !== undefined) optimizer.restore(this.pending.optimizerBefore);
    if (this.need().stages !== undefined) return this.applyStageUpdate(attempt, mean, started);
    const optimizerBefore = optimizer.state();
    const weights = this.weights.slice();
    optimizer.step(weights, mean);
    const hash = hashState(weights, optimizer.state());
    this.pending = { attempt, weights, optimizerBefore, hash };
    return { hash, updateMs: performance.now() - started };
  }

  /**
   * A pipeline stage's update: an optimizer of the stage's size steps its slice of the weights and
   * buffers only (the optimizers are elementwise, so this is exactly the whole optimizer's
   * arithmetic for them), and its hash is its layers' hashes combined. Once it commits, this tab
   * holds only that stage: the rest of the whole state it synced is dropped.
   */
  private applyStageUpdate(attempt: number, mean: Float32Array, started: number): UpdateReport {
    const { optimizer, job, layers } = this.need();
    const task = this.stageTask;
    if (task?.attempt !== attempt) throw new Error(`update of attempt ${attempt}, but the last pipeline stage ran attempt ${task?.attempt ?? "none"}`);
    const slice = sliceOf(layers, task);
    if (mean.length !== slice.length) throw new Error(`stage ${task.stage} has ${slice.length} weights, the reduced gradient ${mean.length}`);
    const optimizerBefore = optimizer.state();
    const part = this.held === undefined ? stageState({ weights: this.weights, optimizer: optimizerBefore }, slice) : { weights: this.weights.slice(), optimizer: optimizerBefore };
    const stageOptimizer = createOptimizer(committedOptimizer(job), slice.length);
    stageOptimizer.restore(part.optimizer);
    stageOptimizer.step(part.weights, mean);
    const after = stageOptimizer.state();
    const range = task.plan.stages[task.stage] as { from: number; to: number };
    const hashes = layerHashes(part.weights, after, layers.slice(range.from, range.to).map((layer) => layer.params));
    const hash = combineLayerHashes(hashes);
    const held = { ...slice, from: range.from, to: range.to };
    this.pending = { attempt, weights: part.weights, optimizerBefore, hash, stage: { task, slice: held, optimizer: stageOptimizer, part: { weights: part.weights, optimizer: after } } };
    return { hash, layerHashes: hashes, updateMs: performance.now() - started };
  }

  async commit(attempt: number, round: number, hash?: string): Promise<StateReport & { uploadMs: number }> {
    const pending = this.pending;
    if (pending?.attempt !== attempt) throw new Error(`commit of attempt ${attempt}, but ${pending?.attempt ?? "none"} is pending`);
    if (pending.stage !== undefined && hash === undefined) throw new Error(`commit of pipeline attempt ${attempt} without the round's hash`);
    this.pending = undefined;
    this.weights = pending.weights;
    if (pending.stage !== undefined) {
      this.held = pending.stage.slice;
      this.need().optimizer = pending.stage.optimizer;
    }
    // A stage cannot compute the round's hash (it combines every stage's): it takes the coordinator's.
    this.hash = pending.stage === undefined ? pending.hash : (hash as string);
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
    // After a pipeline commit the rest of the whole state is gone: a stage's part is not a state to send.
    if (this.held !== undefined) throw new Error("a pipeline stage holds only its layers of the committed state: it uploads its stage's part with its round");
    // The optimizer holds the pending step's state while one is pending: export the committed one.
    const optimizerState = this.pending?.optimizerBefore ?? optimizer.state();
    return encodeState({ round: this.round, hash: this.hash, weights: this.weights, optimizer: optimizerState }).buffer;
  }

  async exportPending(attempt: number, round: number): Promise<ArrayBuffer> {
    const pending = this.pending;
    if (pending?.attempt !== attempt) throw new Error(`export of attempt ${attempt}, but ${pending?.attempt ?? "none"} is pending`);
    // A pipeline stage's uploader sends its stage's part; the server joins the stages'.
    if (pending.stage !== undefined) return encodeState({ round, hash: pending.hash, ...pending.stage.part }).buffer;
    // While an update is pending the optimizer holds its state after that update.
    return encodeState({ round, hash: pending.hash, weights: pending.weights, optimizer: this.need().optimizer.state() }).buffer;
  }

  async predict(inputs: Float32Array, rows: number): Promise<PredictReport> {
    const { manifest } = this.need();
    const model = this.wholeModel();
    const started = performance.now();
    // Serving tabs run no rounds, but a tab moved from training may hold a lease's weights there.
    this.toDevice(this.weights);
    const outputs = await predictRows(model, inputs, rows, manifest.inputShape);
    return { outputs, round: this.round, ms: performance.now() - started };
  }

  async dispose(): Promise<void> {
    this.release();
  }

  private release(): void {
    this.loaded?.model?.dispose();
    this.loaded?.stages?.dispose();
    this.loaded = undefined;
    this.onDevice = undefined;
  }

  /** The whole model: a pipeline job's tab never builds it (it may not fit). */
  private wholeModel(): tf.LayersModel {
    const { model } = this.need();
    if (model === undefined) throw new Error("this pipeline job's tab holds one stage, not the whole model");
    return model;
  }

  private pendingWeights(): Float32Array {
    if (this.pending === undefined) throw new Error("a lease ahead needs a pending update to start from, and none is pending");
    return this.pending.weights;
  }

  /** Writes `weights` to the model unless that very array is there already. */
  private toDevice(weights: Float32Array): void {
    const { model } = this.need();
    // A pipeline tab has no whole model: its stage's weights are written when the stage runs.
    if (this.onDevice === weights || model === undefined) return;
    writeWeights(model, weights);
    this.onDevice = weights;
  }

  private need(): Loaded {
    if (this.loaded === undefined) throw new Error("trainer used before init()");
    return this.loaded;
  }
}
