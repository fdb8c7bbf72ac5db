import type * as tf from "@tensorflow/tfjs";
import type { ActivationDirection } from "@crowdtrain/protocol";
import type { LayerInfo } from "@crowdtrain/training";
import { StageCompute, StageInbox, runStageRound, type ScheduleKind, type StageRoundResult } from "../../src/index.ts";

/**
 * One replica's K stages in one process, linked in memory: every frame goes through the protocol's
 * encoder, is delivered a macrotask later (so stages interleave as they would across tabs) and is
 * decoded and checked by the receiving stage's inbox.
 */
export interface LocalPipelineOptions {
  readonly layers: readonly LayerInfo[];
  readonly cuts: readonly { from: number; to: number }[];
  readonly models: readonly tf.LayersModel[];
  readonly schedule: ScheduleKind;
  readonly microRows: readonly number[];
  /** Per micro-batch inputs and one-hot labels. */
  readonly inputs: readonly tf.Tensor[];
  readonly labels: readonly tf.Tensor[];
  readonly attempt?: number;
  /** Rewrites a frame in flight (tests of bad frames); return undefined to drop it. */
  readonly tamper?: (from: number, direction: ActivationDirection, frame: Uint8Array) => Uint8Array | undefined;
  readonly timeoutMs?: number;
  /** A send from stage `from` in `direction` rejects with the error returned (a link lost), instead of delivering. */
  readonly failSend?: (from: number, direction: ActivationDirection) => Error | undefined;
  /** Largest frame (forces a micro-batch into many frames). */
  readonly maxFrameBytes?: number;
}

export async function runLocalPipeline(o: LocalPipelineOptions): Promise<StageRoundResult[]> {
  const stages = o.cuts.length;
  const attempt = o.attempt ?? 1;
  const id = (k: number): string => `stage-${k}`;
  const shapeAt = (layer: number): readonly number[] => (layer === 0 ? o.layers[0]?.inputShape : o.layers[layer - 1]?.outputShape) ?? [];
  const inboxes = o.cuts.map(
    (cut, k) =>
      new StageInbox({
        attempt,
        micros: o.microRows.length,
        previous: k > 0 ? { id: id(k - 1), stage: k - 1 } : undefined,
        next: k < stages - 1 ? { id: id(k + 1), stage: k + 1 } : undefined,
        inputShapeOf: (m) => [o.microRows[m] as number, ...shapeAt(cut.from)],
        outputShapeOf: (m) => [o.microRows[m] as number, ...shapeAt(cut.to)],
        ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
      }),
  );
  // The first stage to fail ends the round for all (as the coordinator's abort does across tabs):
  // its error fails every inbox, so no stage waits out its timeout for a neighbour that stopped.
  let failure: { error: unknown } | undefined;
  const failAll = (error: unknown): never => {
    failure ??= { error };
    for (const inbox of inboxes) inbox.fail(failure.error);
    throw error;
  };
  const runs = o.cuts.map((cut, k) =>
    runStageRound({
      compute: new StageCompute(o.models[k] as tf.LayersModel),
      stage: k,
      stages,
      schedule: o.schedule,
      attempt,
      microRows: o.microRows,
      inputShape: shapeAt(cut.from),
      outputShape: shapeAt(cut.to),
      ...(k === 0 ? { inputs: o.inputs } : {}),
      ...(k === stages - 1 ? { labels: o.labels } : {}),
      receive: (direction, micro) => (inboxes[k] as StageInbox).take(direction, micro),
      ...(o.maxFrameBytes === undefined ? {} : { maxFrameBytes: o.maxFrameBytes }),
      send: async (direction, frames) => {
        const lost = o.failSend?.(k, direction);
        if (lost !== undefined) throw lost;
        const to = direction === "forward" ? k + 1 : k - 1;
        for (const frame of frames) {
          const delivered = o.tamper === undefined ? frame : o.tamper(k, direction, frame);
          if (delivered === undefined) continue;
          await new Promise((resolve) => setTimeout(resolve, 0));
          try {
            inboxes[to]?.deliver(id(k), delivered);
          } catch (error) {
            // The receiving inbox has failed its round with this violation: its stage rejects with it.
            failAll(error);
          }
        }
      },
      now: () => performance.now(),
    }).catch(failAll),
  );
  const settled = await Promise.allSettled(runs);
  if (failure !== undefined) throw failure.error;
  return settled.map((s) => (s as PromiseFulfilledResult<StageRoundResult>).value);
}
