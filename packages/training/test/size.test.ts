import type { ModelSpec, OptimizerSpec } from "@crowdtrain/protocol";
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { buildModel, createOptimizer, encodeState, MAX_STATE_HEADER_BYTES, parameterCount, stateBytes, weightCount } from "../src/index.ts";
import { useCpu } from "./helpers.ts";

beforeAll(useCpu);

const MNIST: [number, number, number] = [28, 28, 1];

/** The weight count of the model buildModel really makes (the length of the flat weight vector). */
function builtCount(spec: ModelSpec, inputShape: readonly number[], classes: number): number {
  const model = buildModel(spec, inputShape, classes, 1);
  try {
    return weightCount(model);
  } finally {
    model.dispose();
  }
}

describe("parameterCount", () => {
  const cases: [string, ModelSpec, readonly number[], number][] = [
    ["mlp [128] on mnist", { kind: "mlp", hidden: [128], activation: "relu" }, MNIST, 10],
    ["mlp [8, 8] on mnist", { kind: "mlp", hidden: [8, 8], activation: "tanh" }, MNIST, 10],
    ["mlp without hidden layers on a flat input", { kind: "mlp", hidden: [], activation: "relu" }, [20], 3],
    ["cnn of jobs/mnist-cnn.json", { kind: "cnn", filters: [8, 16], kernelSize: 3, dense: 64 }, MNIST, 10],
    ["cnn, 4 blocks (28 -> 1)", { kind: "cnn", filters: [4, 4, 4, 4], kernelSize: 3, dense: 8 }, MNIST, 10],
    ["cnn, odd sides and a 5x5 kernel on 3 channels", { kind: "cnn", filters: [4, 6], kernelSize: 5, dense: 16 }, [9, 7, 3], 4],
  ];
  it.each(cases)("%s matches buildModel", (_name, spec, inputShape, classes) => {
    const before = tf.memory().numTensors;
    expect(parameterCount(spec, inputShape, classes)).toBe(builtCount(spec, inputShape, classes));
    expect(tf.memory().numTensors).toBe(before);
  });

  it("is plain arithmetic: the mlp [128] by hand", () => {
    expect(parameterCount({ kind: "mlp", hidden: [128], activation: "relu" }, MNIST, 10)).toBe(784 * 128 + 128 + 128 * 10 + 10);
  });

  it("sizes a model too big to build without building it", () => {
    const parameters = parameterCount({ kind: "mlp", hidden: [5000, 5000], activation: "relu" }, MNIST, 10);
    expect(parameters).toBe(784 * 5000 + 5000 + 5000 * 5000 + 5000 + 5000 * 10 + 10);
    expect(parameters).toBeGreaterThan(25_000_000);
    // Weights, m and v as float32: about 348 MB, which the server refuses at start.
    expect(stateBytes(parameters, "adam")).toBeGreaterThan(347_000_000);
  });

  it("refuses a cnn on a flat input, as buildModel does", () => {
    const cnn: ModelSpec = { kind: "cnn", filters: [4], kernelSize: 3, dense: 8 };
    expect(() => parameterCount(cnn, [784], 10)).toThrow(/input shape \[height, width, channels\]/);
    expect(() => buildModel(cnn, [784], 10, 1)).toThrow(/input shape \[height, width, channels\]/);
  });

  it("refuses an input that pooling shrinks to nothing", () => {
    // buildModel builds this one (its pool gives 0 x 0, flatten 0 features, the dense layer sees only
    // its bias): its "too small" check looks at the output shape, which is [null, classes] whatever
    // the input. A model that cannot see its input is refused here instead.
    expect(() => parameterCount({ kind: "cnn", filters: [4], kernelSize: 3, dense: 8 }, [1, 1, 1], 10)).toThrow(/too small/);
    expect(() => parameterCount({ kind: "cnn", filters: [4, 4, 4, 4], kernelSize: 3, dense: 8 }, [15, 28, 1], 10)).toThrow(/too small/);
  });
});

describe("stateBytes", () => {
  const adam: OptimizerSpec = { kind: "adam", learningRate: 1e-3, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
  const sgd: OptimizerSpec = { kind: "sgd", learningRate: 0.1, momentum: 0.9, nesterov: false };

  it.each([adam, sgd])("bounds the encoded state of a real model ($kind) to within the header bound", (spec) => {
    const modelSpec: ModelSpec = { kind: "mlp", hidden: [8, 8], activation: "relu" };
    const parameters = parameterCount(modelSpec, MNIST, 10);
    const optimizer = createOptimizer(spec, parameters);
    // A late round and step make the longest header a real run would write.
    const state = { round: 0xffffffff, hash: "f".repeat(64), weights: new Float32Array(parameters), optimizer: { ...optimizer.state(), step: 2 ** 40 } };
    const encoded = encodeState(state).byteLength;
    const bound = stateBytes(parameters, spec.kind);
    expect(encoded).toBeLessThanOrEqual(bound);
    expect(bound - encoded).toBeLessThan(MAX_STATE_HEADER_BYTES);
    // Everything but the header is exact.
    expect(encoded - 12 - new DataView(encodeState(state).buffer).getUint32(8, true)).toBe(bound - 12 - MAX_STATE_HEADER_BYTES);
  });

  it("counts one buffer for sgd and two for adam", () => {
    expect(stateBytes(1000, "sgd")).toBe(12 + MAX_STATE_HEADER_BYTES + 1000 * 2 * 4);
    expect(stateBytes(1000, "adam")).toBe(12 + MAX_STATE_HEADER_BYTES + 1000 * 3 * 4);
    expect(() => stateBytes(-1, "adam")).toThrow(RangeError);
  });
});
