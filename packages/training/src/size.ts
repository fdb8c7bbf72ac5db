import type { ModelSpec, OptimizerSpec } from "@crowdtrain/protocol";
import { MAX_STATE_HEADER_BYTES } from "./state.ts";

/**
 * How big a job's model and its state are, by arithmetic alone. The server needs these before it
 * builds anything: to refuse at start a job whose state would not fit in memory (building it is
 * what runs out), and to size the upload limit of PUT /api/state to the exact state. The formulas
 * mirror buildModel (models.ts); the tests compare them with real models.
 */

/** Trainable weights (kernels and biases) of the model buildModel makes for this spec. */
export function parameterCount(spec: ModelSpec, inputShape: readonly number[], classes: number): number {
  const dims = [...inputShape, classes];
  if (dims.some((d) => !Number.isInteger(d) || d < 1)) throw new RangeError(`input shape [${inputShape.join(", ")}] and ${classes} classes must be positive integers`);
  // A dense layer: an in x out kernel and one bias per output.
  const dense = (inputs: number, units: number): number => inputs * units + units;
  let count = 0;
  let features: number;
  if (spec.kind === "mlp") {
    features = inputShape.reduce((product, d) => product * d, 1);
    for (const units of spec.hidden) {
      count += dense(features, units);
      features = units;
    }
  } else {
    if (inputShape.length !== 3) throw new Error(`a cnn needs an input shape [height, width, channels], got [${inputShape.join(", ")}]`);
    let [height, width, channels] = inputShape as [number, number, number];
    for (const filters of spec.filters) {
      // conv2d with padding "same", stride 1: a k x k x channels kernel per filter, one bias each;
      // height and width are kept.
      count += spec.kernelSize * spec.kernelSize * channels * filters + filters;
      channels = filters;
      // maxPooling2d, pool 2, stride 2, padding "valid": each side halves, rounding down.
      height = Math.floor(height / 2);
      width = Math.floor(width / 2);
    }
    if (height === 0 || width === 0) throw new Error(`input [${inputShape.join(", ")}] is too small for this model`);
    count += dense(height * width * channels, spec.dense);
    features = spec.dense;
  }
  return count + dense(features, classes);
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
