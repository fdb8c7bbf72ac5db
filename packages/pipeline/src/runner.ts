import * as tf from "@tensorflow/tfjs";
import { encodeActivation, type ActivationDirection } from "@crowdtrain/protocol";
import { stageOps, type Interval, type ScheduleKind } from "./schedule.ts";

/** A stretch of a stage's compute: a micro-batch's forward or backward, or the gradient's read-back at the end. */
export type BusyInterval = Interval & { readonly kind: "forward" | "backward" | "gradient" };
import type { StageCompute } from "./stage-compute.ts";

/**
 * One stage of one replica through one pipeline round: the schedule's ops in order, activations
 * received from the inbox and sent to the neighbours, the weights' gradient at the end. The runner
 * owns the tensors it makes; the caller owns the inputs and labels it passes in.
 *
 * Sends are not awaited before the next op, so a stage computes micro-batch m+1 while m's
 * activations travel (one micro-batch's frames queued per direction at a time); a send that fails
 * fails the round at once, with its own error, even while the stage waits for a neighbour (the
 * caller then fails the round's inbox, which owns those waits).
 */
export interface StageRoundOptions {
  readonly compute: StageCompute;
  readonly stage: number;
  readonly stages: number;
  readonly schedule: ScheduleKind;
  readonly attempt: number;
  /** Rows of each micro-batch of this replica (all stages of a replica share them). */
  readonly microRows: readonly number[];
  /** Per-sample shape into and out of this stage. */
  readonly inputShape: readonly number[];
  readonly outputShape: readonly number[];
  /** First stage: each micro-batch's inputs. */
  readonly inputs?: readonly tf.Tensor[];
  /** Last stage: each micro-batch's one-hot labels. */
  readonly labels?: readonly tf.Tensor[];
  /** A whole micro-batch tensor from a neighbour (forward from the stage before, backward from the one after). */
  readonly receive: (direction: ActivationDirection, micro: number) => Promise<Float32Array>;
  /** Frames to the neighbour: forward to the stage after, backward to the stage before. */
  readonly send: (direction: ActivationDirection, frames: Uint8Array<ArrayBuffer>[]) => Promise<void>;
  readonly now: () => number;
  /** Largest frame on the link (default the protocol's MAX_FRAME_BYTES). */
  readonly maxFrameBytes?: number;
}

export interface StageRoundResult {
  /** The stage's weights' gradient of the replica's batch-mean loss, flat in trainableWeights order. */
  readonly gradient: Float32Array;
  /** Last stage: the batch-mean loss before the update. */
  readonly loss: number | undefined;
  /** When this stage computed (not waited): the measured bubble's input, and per-op costs for simulateRound. */
  readonly busy: readonly BusyInterval[];
  readonly span: Interval;
  /** Activation bytes this stage sent, both directions (payload and headers). */
  readonly bytesSent: number;
}

/** Rows of each of `micros` micro-batches of a `rows`-row batch: as equal as can be, larger first. */
export function microBatchRows(rows: number, micros: number): number[] {
  if (!Number.isInteger(rows) || !Number.isInteger(micros) || micros < 1 || rows < micros) {
    throw new RangeError(`cannot cut ${rows} rows into ${micros} non-empty micro-batches`);
  }
  const base = Math.floor(rows / micros);
  return Array.from({ length: micros }, (_, m) => base + (m < rows % micros ? 1 : 0));
}

export async function runStageRound(o: StageRoundOptions): Promise<StageRoundResult> {
  const first = o.stage === 0;
  const last = o.stage === o.stages - 1;
  const micros = o.microRows.length;
  const batchRows = o.microRows.reduce((sum, rows) => sum + rows, 0);
  if (first && o.inputs?.length !== micros) throw new RangeError(`the first stage needs ${micros} input micro-batches`);
  if (last && o.labels?.length !== micros) throw new RangeError(`the last stage needs ${micros} label micro-batches`);
  const rowsOf = (micro: number): number => o.microRows[micro] as number;
  // Inputs kept from a micro-batch's forward to its backward. The first stage's are the caller's.
  const stash = new Map<number, tf.Tensor>();
  const sending: Promise<void>[] = [];
  let sendFailure: { error: unknown } | undefined;
  // Rejects with the first failed send, so a wait for a neighbour's answer to frames that never left
  // ends with the real cause at once, not with a timeout blaming the neighbour.
  let failSends: (error: unknown) => void = () => undefined;
  const sendsFailed = new Promise<never>((_, reject) => {
    failSends = reject;
  });
  sendsFailed.catch(() => undefined); // observed through the races below and sendFailure
  // One micro-batch's frames queued per direction at a time: compute still overlaps transfer, but a
  // slow link does not pile M micro-batches into the transport's queue.
  const tails: Record<ActivationDirection, Promise<void>> = { forward: Promise.resolve(), backward: Promise.resolve() };
  const busy: BusyInterval[] = [];
  let bytesSent = 0;
  const start = o.now();

  const send = (direction: ActivationDirection, micro: number, values: Float32Array, shape: readonly number[]): void => {
    const frames = encodeActivation({ direction, attempt: o.attempt, micro, stage: o.stage, shape: [rowsOf(micro), ...shape] }, values, o.maxFrameBytes);
    bytesSent += frames.reduce((sum, f) => sum + f.byteLength, 0);
    const sent = tails[direction].then(() => o.send(direction, frames));
    tails[direction] = sent;
    sent.catch((error: unknown) => {
      if (sendFailure !== undefined) return;
      sendFailure = { error };
      failSends(error);
    });
    sending.push(sent);
  };
  const receive = (direction: ActivationDirection, micro: number): Promise<Float32Array> => Promise.race([o.receive(direction, micro), sendsFailed]);
  const timed = async <T>(kind: BusyInterval["kind"], work: () => Promise<T>): Promise<T> => {
    const t0 = o.now();
    try {
      return await work();
    } finally {
      busy.push({ kind, start: t0, end: o.now() });
    }
  };

  try {
    for (const op of stageOps(o.schedule, o.stages, o.stage, micros)) {
      if (sendFailure !== undefined) throw sendFailure.error;
      const m = op.micro;
      if (op.kind === "forward") {
        const input = first ? (o.inputs?.[m] as tf.Tensor) : tf.tensor(await receive("forward", m), [rowsOf(m), ...o.inputShape]);
        stash.set(m, input);
        // The last stage's forward runs inside its backward (the loss needs it there anyway).
        if (!last) {
          await timed("forward", async () => {
            const output = o.compute.forward(input);
            try {
              send("forward", m, (await output.data()) as Float32Array, o.outputShape);
            } finally {
              output.dispose();
            }
          });
        }
      } else {
        const input = stash.get(m);
        if (input === undefined) throw new Error(`schedule bug: backward of micro-batch ${m} before its forward`);
        const outputGradient = last ? undefined : tf.tensor(await receive("backward", m), [rowsOf(m), ...o.outputShape]);
        await timed("backward", async () => {
          let inputGradient: tf.Tensor | undefined;
          try {
            inputGradient = last
              ? o.compute.lossBackward(input, o.labels?.[m] as tf.Tensor, batchRows, !first)
              : o.compute.backward(input, outputGradient as tf.Tensor, !first);
          } finally {
            outputGradient?.dispose();
          }
          stash.delete(m);
          if (!first) input.dispose();
          if (inputGradient !== undefined) {
            try {
              send("backward", m, (await inputGradient.data()) as Float32Array, o.inputShape);
            } finally {
              inputGradient.dispose();
            }
          }
        });
      }
    }
    const { gradient, loss } = await timed("gradient", () => o.compute.takeGradient());
    await Promise.all(sending);
    return { gradient, loss, busy, span: { start, end: o.now() }, bytesSent };
  } catch (error) {
    o.compute.reset();
    // A failed send is the cause of whatever the stage was waiting for when it gave up.
    throw sendFailure === undefined ? error : sendFailure.error;
  } finally {
    if (!first) tf.dispose([...stash.values()]);
    // Failed sends were recorded above; wait for the rest so nothing outlives the round.
    await Promise.allSettled(sending);
  }
}
