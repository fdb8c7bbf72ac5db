import type { Job, ModelSpec } from "@crowdtrain/protocol";
import { nobleSha256, stateHasher, type Sha256, type StateHasher } from "./hash.ts";

/**
 * The layers of a job's model, by arithmetic alone: what buildModel builds (models.ts), in order,
 * with each layer's per-sample shapes, weights and forward cost. One description serves three needs:
 * buildModel and buildStage build tfjs layers from it (so a stage's layers are exactly the whole
 * model's, with the same names and seeds), parameterCount sums it before anything is built, and the
 * pipeline's partitioner cuts it into stages by cost and memory.
 */
interface LayerBase {
  /** Fixed name (also the weights' names in an exported model.json). */
  readonly name: string;
  /** Per-sample shape in (no batch dimension). */
  readonly inputShape: readonly number[];
  /** Per-sample shape out. */
  readonly outputShape: readonly number[];
  /** Trainable weights (kernel and bias). */
  readonly params: number;
  /** Multiply-adds ×2 (or comparisons) of one sample's forward pass: a cost estimate, not a measurement. */
  readonly flops: number;
  /**
   * Index of this layer's kernel among the model's kernels: its seed is layerSeed(seed, index), so a
   * stage built alone draws the same initial weights as the whole model. Undefined without weights.
   */
  readonly kernelIndex?: number;
}

export type LayerInfo =
  | (LayerBase & { readonly kind: "flatten" })
  | (LayerBase & { readonly kind: "dense"; readonly units: number; readonly activation: "relu" | "tanh" | "sigmoid" | "softmax" })
  | (LayerBase & { readonly kind: "conv2d"; readonly filters: number; readonly kernelSize: number })
  | (LayerBase & { readonly kind: "maxPool" });

/** Elements of a tensor of `shape` (per sample: a layer's inputs or outputs). */
export function shapeElements(shape: readonly number[]): number {
  return shape.reduce((elements, dim) => elements * dim, 1);
}

export function modelLayers(spec: ModelSpec, inputShape: readonly number[], classes: number): LayerInfo[] {
  const dims = [...inputShape, classes];
  if (dims.some((d) => !Number.isInteger(d) || d < 1)) throw new RangeError(`input shape [${inputShape.join(", ")}] and ${classes} classes must be positive integers`);
  const layers: LayerInfo[] = [];
  let shape: readonly number[] = [...inputShape];
  let kernels = 0;
  const dense = (name: string, units: number, activation: "relu" | "tanh" | "sigmoid" | "softmax"): void => {
    const inputs = shapeElements(shape);
    layers.push({ kind: "dense", name, units, activation, inputShape: shape, outputShape: [units], params: inputs * units + units, flops: 2 * inputs * units, kernelIndex: kernels++ });
    shape = [units];
  };
  const flatten = (): void => {
    layers.push({ kind: "flatten", name: "flatten", inputShape: shape, outputShape: [shapeElements(shape)], params: 0, flops: 0 });
    shape = [shapeElements(shape)];
  };
  if (spec.kind === "mlp") {
    // tf.layers.flatten needs rank >= 2 per sample; a rank-1 input is already flat.
    if (shape.length > 1) flatten();
    spec.hidden.forEach((units, i) => dense(`dense_${i + 1}`, units, spec.activation));
  } else {
    if (inputShape.length !== 3) throw new Error(`a cnn needs an input shape [height, width, channels], got [${inputShape.join(", ")}]`);
    spec.filters.forEach((filters, i) => {
      const [height, width, channels] = shape as [number, number, number];
      // padding "same", stride 1: height and width are kept.
      const kernel = spec.kernelSize * spec.kernelSize * channels;
      layers.push({
        kind: "conv2d", name: `conv_${i + 1}`, filters, kernelSize: spec.kernelSize, inputShape: shape,
        outputShape: [height, width, filters], params: kernel * filters + filters, flops: 2 * height * width * kernel * filters, kernelIndex: kernels++,
      });
      // maxPooling2d, pool 2, stride 2, padding "valid": each side halves, rounding down.
      const pooled = [Math.floor(height / 2), Math.floor(width / 2), filters];
      layers.push({ kind: "maxPool", name: `pool_${i + 1}`, inputShape: [height, width, filters], outputShape: pooled, params: 0, flops: height * width * filters });
      shape = pooled;
    });
    if (shape.some((d) => d === 0)) throw new Error(`input [${inputShape.join(", ")}] is too small for this model`);
    flatten();
    dense("dense_1", spec.dense, "relu");
  }
  dense("output", classes, "softmax");
  return layers;
}

/** Trainable weights of the layers [from, to). */
export function layerParams(layers: readonly LayerInfo[], from = 0, to = layers.length): number {
  return layers.slice(from, to).reduce((sum, layer) => sum + layer.params, 0);
}

/** How a job's whole state is hashed: hashState, or for a pipeline job its layers' hashes combined. */
export function jobStateHasher(job: Pick<Job, "model" | "parallelism">, inputShape: readonly number[], classes: number, sha: Sha256 = nobleSha256): StateHasher {
  return stateHasher(job.parallelism.stages, modelLayers(job.model, inputShape, classes).map((layer) => layer.params), sha);
}
