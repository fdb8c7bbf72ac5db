import type { ModelSpec, OptimizerSpec } from "@crowdtrain/protocol";
import { layerParams, modelLayers } from "./layers.ts";
import { MAX_STATE_HEADER_BYTES } from "./state.ts";

/**
 * How big a job's model and its state are, by arithmetic alone. The server needs these before it
 * builds anything: to refuse at start a job whose state would not fit in memory (building it is
 * what runs out), and to size the upload limit of PUT /api/state to the exact state. The count is
 * layers.ts's, which buildModel builds from; the tests compare it with real models.
 */

/** Trainable weights (kernels and biases) of the model buildModel makes for this spec. */
export function parameterCount(spec: ModelSpec, inputShape: readonly number[], classes: number): number {
  return layerParams(modelLayers(spec, inputShape, classes));
}

/** Per-weight float32 buffers each optimizer keeps: sgd its velocity, adam m and v. */
export const OPTIMIZER_BUFFERS: Readonly<Record<OptimizerSpec["kind"], number>> = { sgd: 1, adam: 2 };

/**
 * Most bytes an encoded state (encodeState) of `parameters` weights takes: the 12-byte prefix, the
 * JSON header at its bound MAX_STATE_HEADER_BYTES (its exact length depends on the round and step),
 * and the weights plus each optimizer buffer as float32. A real state is at most this, and short of
 * it by less than MAX_STATE_HEADER_BYTES.
 */
export function stateBytes(parameters: number, optimizerKind: OptimizerSpec["kind"]): number {
  if (!Number.isSafeInteger(parameters) || parameters < 0) throw new RangeError(`parameter count must be a non-negative integer, got ${parameters}`);
  return 12 + MAX_STATE_HEADER_BYTES + parameters * (1 + OPTIMIZER_BUFFERS[optimizerKind]) * 4;
}
