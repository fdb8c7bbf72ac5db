import * as tf from "@tensorflow/tfjs";
import { featureBytesOf } from "./dataset.ts";

/**
 * The model's outputs (class probabilities) for `rows` flattened inputs, read back as one
 * Float32Array of rows x classes. One predict call for the whole batch: on a GPU it costs barely
 * more than one row, which is why serving tabs batch requests. Tensors are freed here.
 */
export async function predictRows(model: tf.LayersModel, inputs: Float32Array, rows: number, inputShape: readonly number[]): Promise<Float32Array> {
  const features = featureBytesOf(inputShape);
  if (!(Number.isInteger(rows) && rows >= 1) || inputs.length !== rows * features) {
    throw new RangeError(`predictRows: ${inputs.length} values are not ${rows} rows of ${features}`);
  }
  const output = tf.tidy(() => model.predict(tf.tensor(inputs, [rows, ...inputShape])) as tf.Tensor);
  try {
    return (await output.data()) as Float32Array;
  } finally {
    output.dispose();
  }
}
