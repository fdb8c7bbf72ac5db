import * as tf from "@tensorflow/tfjs";
import { ActivationViolation, microBatchRows, NeighbourGone, PipelineTimeout, runStageRound, StageCompute, StageInbox, stageSlices, type StageSlice } from "@crowdtrain/pipeline";
import { batchTensors, buildStage, writeWeights, type Dataset, type DatasetManifest, type LayerInfo } from "@crowdtrain/training";
import type { StageOutcome, StageTask } from "./api.ts";
import { SendFailed, StagePortEnd } from "./stage-port.ts";

/**
 * A pipeline tab's stage: the model of layers [from, to) only (never the whole model, which may not
 * fit the tab), kept across rounds while the plan's cut stays the same, rebuilt when it changes.
 * Owns its model's tensors.
 */
export class StageHolder {
  private held: { from: number; to: number; model: tf.LayersModel; compute: StageCompute } | undefined;

  constructor(
    private readonly layers: readonly LayerInfo[],
    private readonly seed: number,
  ) {}

  /** The stage of layers [from, to), built (with the whole model's names and seeded weights) if needed. */
  get(from: number, to: number): { model: tf.LayersModel; compute: StageCompute } {
    if (this.held?.from !== from || this.held.to !== to) {
      this.dispose();
      const model = buildStage(this.layers, from, to, this.seed);
      this.held = { from, to, model, compute: new StageCompute(model) };
    }
    return this.held;
  }

  dispose(): void {
    this.held?.compute.reset();
    this.held?.model.dispose();
    this.held = undefined;
  }
}

export type StageRoundInputs = {
  holder: StageHolder;
  layers: readonly LayerInfo[];
  train: Dataset;
  manifest: DatasetManifest;
  /** The stage's committed weights (its slice of the whole model's). */
  stageWeights: Float32Array;
  task: StageTask;
  port: MessagePort;
};

/** Where stage `stage`'s weights lie in the whole flat weights, under the task's plan. */
export function sliceOf(layers: readonly LayerInfo[], task: Pick<StageTask, "plan" | "stage">): StageSlice {
  return stageSlices(layers, task.plan.stages)[task.stage] as StageSlice;
}

/**
 * Runs this tab's stage through one pipeline round: the replica's lease cut into the plan's
 * micro-batches, the first stage feeding their inputs, the last their labels, activations through
 * the port. Failures the way pipeline rounds fail come back as an outcome naming the suspect; any
 * other throw is a bug and propagates.
 */
export async function runStage(o: StageRoundInputs): Promise<StageOutcome> {
  const { task, layers } = o;
  const range = task.plan.stages[task.stage];
  if (range === undefined) throw new RangeError(`stage ${task.stage} is not in a plan of ${task.plan.stages.length}`);
  const row = task.plan.replicas[task.replica] ?? [];
  const stages = task.plan.stages.length;
  const first = task.stage === 0;
  const last = task.stage === stages - 1;
  const shapeAt = (layer: number): readonly number[] => (layer === 0 ? (layers[0]?.inputShape ?? []) : (layers[layer - 1]?.outputShape ?? []));
  const { compute, model } = o.holder.get(range.from, range.to);
  const microRows = microBatchRows(task.lease.length, task.plan.microBatches);
  const inbox = new StageInbox({
    attempt: task.attempt,
    micros: microRows.length,
    previous: first ? undefined : { id: row[task.stage - 1] as string, stage: task.stage - 1 },
    next: last ? undefined : { id: row[task.stage + 1] as string, stage: task.stage + 1 },
    inputShapeOf: (m) => [microRows[m] as number, ...shapeAt(range.from)],
    outputShapeOf: (m) => [microRows[m] as number, ...shapeAt(range.to)],
  });
  const previous = first ? undefined : (row[task.stage - 1] as string);
  const next = last ? undefined : (row[task.stage + 1] as string);
  const link = new StagePortEnd(o.port, {
    onFrame: (from, frame) => {
      // Only a neighbour's frames can fail the round: anyone else's are dropped, or any peer that
      // can reach this tab could abort its rounds for free.
      if (from !== previous && from !== next) {
        console.warn(`activations: dropped a frame from ${from}, not a neighbour of stage ${task.stage} in round ${task.attempt}`);
        return;
      }
      try {
        inbox.deliver(from, frame);
      } catch (error) {
        // The inbox failed the round with it; the round's outcome names the sender.
        if (!(error instanceof ActivationViolation)) throw error;
      }
    },
    onGone: (peer, reason) => inbox.peerGone(peer, reason),
    onAbort: (reason) => inbox.fail(new RoundAborted(reason)),
  });
  const batches: { xs: tf.Tensor; ys: tf.Tensor2D }[] = [];
  const started = performance.now();
  try {
    writeWeights(model, o.stageWeights);
    // The lease's micro-batches: the first stage's inputs, the last stage's one-hot labels.
    let at = 0;
    for (const rows of first || last ? microRows : []) {
      batches.push(batchTensors(o.train, task.lease.slice(at, at + rows), o.manifest.inputShape, o.manifest.classes));
      at += rows;
    }
    const result = await runStageRound({
      compute,
      stage: task.stage,
      stages,
      schedule: task.plan.schedule,
      attempt: task.attempt,
      microRows,
      inputShape: shapeAt(range.from),
      outputShape: shapeAt(range.to),
      ...(first ? { inputs: batches.map((b) => b.xs) } : {}),
      ...(last ? { labels: batches.map((b) => b.ys) } : {}),
      receive: (direction, micro) => inbox.take(direction, micro),
      send: (direction, frames) => link.send(row[direction === "forward" ? task.stage + 1 : task.stage - 1] as string, frames),
      now: () => performance.now(),
    });
    const computeMs = performance.now() - started;
    const busyMs = result.busy.reduce((sum, interval) => sum + (interval.end - interval.start), 0);
    return { ok: true, report: { gradient: result.gradient, loss: result.loss ?? 0, samples: task.lease.length, computeMs, readbackMs: 0, busyMs, activationBytes: result.bytesSent } };
  } catch (error) {
    const failure = asFailure(error);
    if (failure === undefined) throw error;
    return { ok: false, ...failure };
  } finally {
    inbox.fail(new RoundAborted(`round ${task.attempt} is over`));
    link.close();
    tf.dispose(batches.flatMap((b) => [b.xs, b.ys]));
  }
}

/** The coordinator aborted the round (or it ended) while the stage waited. */
class RoundAborted extends Error {
  override name = "RoundAborted";
}

function asFailure(error: unknown): Omit<Extract<StageOutcome, { ok: false }>, "ok"> | undefined {
  if (error instanceof ActivationViolation) return { code: "bad-frame", suspect: error.sender, message: error.message };
  if (error instanceof PipelineTimeout || error instanceof NeighbourGone || error instanceof SendFailed) {
    return { code: error instanceof PipelineTimeout ? "timeout" : "peer-gone", suspect: error.peer, message: error.message };
  }
  if (error instanceof RoundAborted) return { code: "aborted", suspect: undefined, message: error.message };
  return undefined;
}
