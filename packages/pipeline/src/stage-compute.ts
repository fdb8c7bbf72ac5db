import * as tf from "@tensorflow/tfjs";
import { meanCrossEntropy } from "@crowdtrain/training";

/**
 * One stage's arithmetic in a pipeline round, on whatever backend tfjs runs. A stage is a
 * tf.Sequential of consecutive layers (buildStage). Forward sends its outputs on; backward gets the
 * gradient of the loss with respect to those outputs and returns the gradient with respect to its
 * inputs (for the stage before) while adding its weights' gradients into an accumulator.
 *
 * Backward recomputes the forward (GPipe's re-materialisation): a stage keeps only each micro-batch's
 * input between its forward and its backward, not every layer's activations, so its activation
 * memory is M inputs instead of M × its layers' outputs, for one extra forward per micro-batch.
 *
 * The loss is the mean cross-entropy over the replica's whole batch, so the last stage scales each
 * micro-batch's mean by rows/batchRows: the micro-batches' gradients then sum to the batch-mean
 * gradient a single model computes on the whole batch (equal within float32 rounding, since the sums
 * run in another order).
 */
export class StageCompute {
  private readonly variables: tf.Variable[];
  private accumulated: tf.Tensor[] | undefined;
  /** The last stage's loss so far, on the device: read back with the gradient, never alone (no sync read on WebGPU). */
  private lossSum: tf.Scalar | undefined;

  constructor(private readonly model: tf.LayersModel) {
    this.variables = model.trainableWeights.map((w) => w.read() as tf.Variable);
  }

  /** The stage's outputs for one micro-batch (the caller owns and disposes them). */
  forward(input: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.model.apply(input, { training: true }) as tf.Tensor);
  }

  /**
   * Backward of a stage that is not the last: `outputGradient` is d(loss)/d(outputs). Adds the
   * weights' gradients to the accumulator; returns d(loss)/d(input) unless `inputGradient` is false
   * (the first stage's inputs are data). The caller owns the returned tensor.
   */
  backward(input: tf.Tensor, outputGradient: tf.Tensor, inputGradient: boolean): tf.Tensor | undefined {
    const { value, grads } = tf.engine().gradients(() => this.model.apply(input, { training: true }) as tf.Tensor, this.sources(input, inputGradient), outputGradient);
    // The recomputed outputs: only their gradient was needed.
    value.dispose();
    return this.keep(grads, inputGradient);
  }

  /**
   * Forward, loss and backward of the last stage for one micro-batch of `labels` (one-hot), which
   * is `rows / batchRows` of the replica's batch.
   */
  lossBackward(input: tf.Tensor, labels: tf.Tensor, batchRows: number, inputGradient: boolean): tf.Tensor | undefined {
    const rows = input.shape[0] ?? 0;
    if (rows === 0 || labels.shape[0] !== rows) throw new RangeError(`lossBackward: ${rows} inputs but ${labels.shape[0]} labels`);
    const share = rows / batchRows;
    const { value, grads } = tf.engine().gradients(
      () => tf.mul(meanCrossEntropy(labels, this.model.apply(input, { training: true }) as tf.Tensor), share) as tf.Scalar,
      this.sources(input, inputGradient),
    );
    if (this.lossSum === undefined) {
      this.lossSum = value;
    } else {
      const sum = tf.add(this.lossSum, value) as tf.Scalar;
      tf.dispose([this.lossSum, value]);
      this.lossSum = sum;
    }
    return this.keep(grads, inputGradient);
  }

  /**
   * The weights' accumulated gradients, flat in trainableWeights order, and (last stage) the
   * batch-mean loss, the sum of the micro-batches' shares: one read-back for both. Resets.
   */
  async takeGradient(): Promise<{ gradient: Float32Array; loss: number | undefined }> {
    const parts = this.accumulated;
    const loss = this.lossSum;
    this.accumulated = undefined;
    this.lossSum = undefined;
    if (parts === undefined) throw new Error("takeGradient: no backward ran this round");
    const flat = tf.tidy(() => tf.concat([...parts.map((p) => p.reshape([-1])), ...(loss === undefined ? [] : [loss.reshape([1])])]));
    tf.dispose([...parts, ...(loss === undefined ? [] : [loss])]);
    try {
      const data = (await flat.data()) as Float32Array;
      const size = loss === undefined ? data.length : data.length - 1;
      // slice copies: the gradient gets its own buffer, transferable alone.
      return { gradient: data.slice(0, size), loss: loss === undefined ? undefined : data[size] };
    } finally {
      flat.dispose();
    }
  }

  /** Frees what an abandoned round accumulated. */
  reset(): void {
    tf.dispose([...(this.accumulated ?? []), ...(this.lossSum === undefined ? [] : [this.lossSum])]);
    this.accumulated = undefined;
    this.lossSum = undefined;
  }

  /**
   * What to differentiate with respect to: the weights, and the input only when the stage before
   * needs its gradient. The first stage's inputs are data: asking for their gradient would cost its
   * first layer's backward matmul again, for a tensor thrown away.
   */
  private sources(input: tf.Tensor, inputGradient: boolean): tf.Tensor[] {
    return inputGradient ? [input, ...this.variables] : this.variables;
  }

  private keep(grads: tf.Tensor[], inputGradient: boolean): tf.Tensor | undefined {
    const dx = inputGradient ? grads[0] : undefined;
    const weightGrads = inputGradient ? grads.slice(1) : grads;
    if ((inputGradient && dx === undefined) || weightGrads.length !== this.variables.length) {
      tf.dispose(grads);
      throw new Error("stage backward: missing gradients");
    }
    if (this.accumulated === undefined) {
      this.accumulated = weightGrads;
    } else {
      const sums = this.accumulated.map((sum, i) => tf.add(sum, weightGrads[i] as tf.Tensor));
      tf.dispose([...this.accumulated, ...weightGrads]);
      this.accumulated = sums;
    }
    return dx;
  }
}
