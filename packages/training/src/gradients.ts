import * as tf from "@tensorflow/tfjs";

/**
 * One local gradient: the mean over the batch of d(categorical cross-entropy)/d(weights), flat in
 * `model.trainableWeights` order (see weights.ts). The gradient and the loss are concatenated on the
 * device and read back once, because a read-back is the expensive sync point on WebGPU/WebGL.
 */
export interface GradientResult {
  gradient: Float32Array;
  /** Mean loss over the batch, before the update. */
  loss: number;
  samples: number;
}

/** Synchronous read-back (dataSync): fine on the CPU backend and in tests. */
export function computeGradient(model: tf.LayersModel, xs: tf.Tensor, ys: tf.Tensor): GradientResult {
  const { packed, size, samples } = gradientOnDevice(model, xs, ys);
  try {
    return unpack(packed.dataSync() as Float32Array, size, samples);
  } finally {
    packed.dispose();
  }
}

/** Async read-back (`await data()`): does not block the thread on WebGPU/WebGL. */
export async function computeGradientAsync(model: tf.LayersModel, xs: tf.Tensor, ys: tf.Tensor): Promise<GradientResult> {
  return readGradient(recordGradient(model, xs, ys));
}

/** A gradient recorded and queued on the device, not yet read back. Owns its tensor until read. */
export type RecordedGradient = { packed: tf.Tensor1D; size: number; samples: number };

/**
 * First half of computeGradientAsync: records forward + backward and queues it on the device.
 * On GPU backends the work is still running when this returns; readGradient waits for it. Split
 * so a caller can time dispatch and read-back apart.
 */
export function recordGradient(model: tf.LayersModel, xs: tf.Tensor, ys: tf.Tensor): RecordedGradient {
  return gradientOnDevice(model, xs, ys);
}

/** Second half: one async read-back of gradient and loss; disposes the recorded tensor. */
export async function readGradient(recorded: RecordedGradient): Promise<GradientResult> {
  try {
    return unpack((await recorded.packed.data()) as Float32Array, recorded.size, recorded.samples);
  } finally {
    recorded.packed.dispose();
  }
}

/** Mean categorical cross-entropy of softmax outputs, as model.fit computes it for that loss. */
export function meanCrossEntropy(ys: tf.Tensor, probs: tf.Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.metrics.categoricalCrossentropy(ys, probs)) as tf.Scalar);
}

function gradientOnDevice(model: tf.LayersModel, xs: tf.Tensor, ys: tf.Tensor): { packed: tf.Tensor1D; size: number; samples: number } {
  const samples = xs.shape[0];
  if (samples === undefined || samples === 0) throw new RangeError("computeGradient: empty batch");
  if (ys.shape[0] !== samples) throw new RangeError(`computeGradient: ${samples} inputs but ${ys.shape[0]} labels`);
  const variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  let size = 0;
  const packed = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(
      () => meanCrossEntropy(ys, model.apply(xs, { training: true }) as tf.Tensor),
      variables,
    );
    const parts = variables.map((variable) => {
      const grad = grads[variable.name];
      if (grad === undefined) throw new Error(`no gradient for weight ${variable.name}: it does not affect the loss`);
      size += grad.size;
      return grad.reshape([-1]);
    });
    // The loss rides along as the last element: one read-back for both.
    return tf.concat([...parts, value.reshape([1])]) as tf.Tensor1D;
  });
  return { packed, size, samples };
}

function unpack(data: Float32Array, size: number, samples: number): GradientResult {
  // slice copies the gradient into its own buffer, so it can be transferred to another thread alone.
  return { gradient: data.slice(0, size), loss: data[size] as number, samples };
}
