import * as tf from "@tensorflow/tfjs";

/**
 * The flat weight vector: every trainable weight of the model, each flattened row-major, concatenated
 * in `model.trainableWeights` order. Gradients, optimizer state and the all-reduce use the same order.
 */

export function weightCount(model: tf.LayersModel): number {
  return model.trainableWeights.reduce((sum, w) => sum + w.read().size, 0);
}

/**
 * Reads all trainable weights back as one fresh Float32Array (one synchronous read-back). For the
 * CPU backend (server, tests) only: on WebGPU in a page Chromium's next mapAsync then fails
 * ("A valid external Instance reference no longer exists"); use readWeightsAsync there.
 */
export function readWeights(model: tf.LayersModel): Float32Array {
  const flat = concatWeights(model);
  try {
    // Copy: on the CPU backend dataSync can hand out the backend's own storage.
    return new Float32Array(flat.dataSync());
  } finally {
    flat.dispose();
  }
}

/** As readWeights, with an async read-back (does not stall WebGL/WebGPU pipelines). */
export async function readWeightsAsync(model: tf.LayersModel): Promise<Float32Array> {
  const flat = concatWeights(model);
  try {
    return new Float32Array(await flat.data());
  } finally {
    flat.dispose();
  }
}

/** Replaces every trainable weight from `flat` (copied: later in-place edits of `flat` do not leak in). */
export function writeWeights(model: tf.LayersModel, flat: Float32Array): void {
  const expected = weightCount(model);
  if (flat.length !== expected) throw new RangeError(`writeWeights: got ${flat.length} values, the model has ${expected}`);
  tf.tidy(() => {
    let offset = 0;
    for (const weight of model.trainableWeights) {
      const { shape, size } = weight.read();
      // slice, not subarray: the CPU backend keeps the array it is given, and callers update `flat` in place.
      weight.write(tf.tensor(flat.slice(offset, offset + size), shape, "float32"));
      offset += size;
    }
  });
}

function concatWeights(model: tf.LayersModel): tf.Tensor1D {
  return tf.tidy(() => {
    const parts = model.trainableWeights.map((w) => w.read().reshape([-1]) as tf.Tensor1D);
    // concat of a single tensor may return that tensor's storage; the callers copy anyway.
    return tf.concat(parts);
  });
}
