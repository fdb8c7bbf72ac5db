import * as tf from "@tensorflow/tfjs";
import type { ModelSpec } from "@crowdtrain/protocol";

/**
 * Builds the job's model. Initial weights depend only on `seed`: TF.js seeded initializers draw
 * their numbers in JS (seedrandom), not on the backend, so every peer and the server build the
 * same bits. Layer names are fixed so an exported model.json does not depend on how many models
 * the process built before.
 */
export function buildModel(spec: ModelSpec, inputShape: readonly number[], classes: number, seed: number): tf.Sequential {
  let layerIndex = 0;
  // A distinct, reproducible seed per layer; the same seed everywhere would correlate the layers.
  const kernel = (): ReturnType<typeof tf.initializers.glorotUniform> => tf.initializers.glorotUniform({ seed: layerSeed(seed, layerIndex++) });
  const model = tf.sequential({ name: `${spec.kind}` });
  const shape = [...inputShape];

  // The first layer declares the input shape; later layers must not.
  let input: { inputShape?: number[] } = { inputShape: shape };
  if (spec.kind === "mlp") {
    // tf.layers.flatten needs rank >= 2 per sample; a rank-1 input is already flat.
    if (shape.length > 1) {
      model.add(tf.layers.flatten({ ...input, name: "flatten" }));
      input = {};
    }
    spec.hidden.forEach((units, i) => {
      model.add(tf.layers.dense({ ...input, units, activation: spec.activation, kernelInitializer: kernel(), name: `dense_${i + 1}` }));
      input = {};
    });
  } else {
    if (inputShape.length !== 3) throw new Error(`a cnn needs an input shape [height, width, channels], got [${inputShape.join(", ")}]`);
    spec.filters.forEach((filters, i) => {
      model.add(
        tf.layers.conv2d({
          ...(i === 0 ? input : {}),
          filters,
          kernelSize: spec.kernelSize,
          // "same" keeps 28x28 inputs valid for all 4 allowed blocks (28, 14, 7, 3, 1).
          padding: "same",
          activation: "relu",
          kernelInitializer: kernel(),
          name: `conv_${i + 1}`,
        }),
      );
      model.add(tf.layers.maxPooling2d({ poolSize: 2, strides: 2, name: `pool_${i + 1}` }));
    });
    input = {};
    model.add(tf.layers.flatten({ name: "flatten" }));
    model.add(tf.layers.dense({ units: spec.dense, activation: "relu", kernelInitializer: kernel(), name: "dense_1" }));
  }
  model.add(tf.layers.dense({ ...input, units: classes, activation: "softmax", kernelInitializer: kernel(), name: "output" }));
  const outShape = model.outputs[0]?.shape;
  if (outShape?.some((dim, i) => i > 0 && dim === 0)) throw new Error(`input [${inputShape.join(", ")}] is too small for this model`);
  return model;
}

function layerSeed(seed: number, layer: number): number {
  // Golden-ratio step then a multiply-xorshift: distinct, well-spread 32-bit seeds.
  let x = (seed + Math.imul(layer + 1, 0x9e3779b9)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  return (x ^ (x >>> 13)) >>> 0;
}
