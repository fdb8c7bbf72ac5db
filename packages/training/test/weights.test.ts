import * as tf from "@tensorflow/tfjs";
import type { ModelSpec } from "@crowdtrain/protocol";
import { beforeAll, describe, expect, it } from "vitest";
import { buildModel, hashState, readWeights, readWeightsAsync, weightCount, writeWeights, type OptimizerState } from "../src/index.ts";

const noOptimizer = (): OptimizerState => ({ kind: "sgd", step: 0, scalars: [], buffers: [] });
const hashWeights = (weights: Float32Array): string => hashState(weights, noOptimizer());
import { seededFloats, useCpu } from "./helpers.ts";

beforeAll(useCpu);

const mlp: ModelSpec = { kind: "mlp", hidden: [16, 8], activation: "relu" };
const cnn: ModelSpec = { kind: "cnn", filters: [4, 8], kernelSize: 3, dense: 16 };

describe("buildModel", () => {
  it("builds the MLP and CNN with the expected weight counts", () => {
    const a = buildModel(mlp, [28, 28, 1], 10, 1);
    expect(weightCount(a)).toBe(784 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10);
    const b = buildModel(cnn, [28, 28, 1], 10, 1);
    // conv 3x3x1x4 + 4, conv 3x3x4x8 + 8, 28 -> 14 -> 7, dense 7*7*8 -> 16, output 16 -> 10
    expect(weightCount(b)).toBe(36 + 4 + 288 + 8 + 392 * 16 + 16 + 16 * 10 + 10);
    expect(b.outputs[0]?.shape).toEqual([null, 10]);
    a.dispose();
    b.dispose();
  });

  it("initialises from the seed only", () => {
    const hash = (seed: number): string => {
      const model = buildModel(cnn, [28, 28, 1], 10, seed);
      const h = hashWeights(readWeights(model));
      model.dispose();
      return h;
    };
    expect(hash(7)).toBe(hash(7));
    expect(hash(7)).not.toBe(hash(8));
  });

  it("gives each layer its own initial values", () => {
    const model = buildModel({ kind: "mlp", hidden: [10], activation: "relu" }, [10], 10, 3);
    const flat = readWeights(model);
    // Same-shaped kernels of two layers (10x10) must not be equal.
    expect(Array.from(flat.subarray(0, 100))).not.toEqual(Array.from(flat.subarray(110, 210)));
    model.dispose();
  });
});

describe("flat weights", () => {
  it("round-trips in trainableWeights order without leaking", async () => {
    const model = buildModel(mlp, [28, 28, 1], 10, 1);
    const before = tf.memory().numTensors;
    const flat = seededFloats(weightCount(model), 42);
    writeWeights(model, flat);
    expect(readWeights(model)).toEqual(flat);
    expect(await readWeightsAsync(model)).toEqual(flat);
    expect(Array.from(model.trainableWeights[1]?.read().dataSync() ?? [])).toEqual(Array.from(flat.subarray(784 * 16, 784 * 16 + 16)));
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it("copies on write: editing the array afterwards does not touch the model", () => {
    const model = buildModel(mlp, [28, 28, 1], 10, 1);
    const flat = seededFloats(weightCount(model), 1);
    writeWeights(model, flat);
    flat.fill(0);
    expect(readWeights(model)).toEqual(seededFloats(weightCount(model), 1));
    model.dispose();
  });

  it("rejects a wrong length", () => {
    const model = buildModel(mlp, [28, 28, 1], 10, 1);
    const before = tf.memory().numTensors;
    expect(() => writeWeights(model, new Float32Array(3))).toThrow(`got 3 values, the model has ${weightCount(model)}`);
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });
});

describe("hashState", () => {
  it("is pinned: SHA-256 of a fixed layout, the same string on every machine", () => {
    expect(hashWeights(Float32Array.from([0, 1, -1.5, 3.25]))).toMatchInlineSnapshot(`"aa83ff91541c0ec9fd8612ac2a8f3b1b53604922df9820166520b622d741aad6"`);
    expect(hashWeights(new Float32Array(0))).toMatch(/^[0-9a-f]{64}$/);
  });

  it("sees a one-bit change, a length change and -0 in the weights", () => {
    const flat = seededFloats(100_000, 9);
    const base = hashWeights(flat);
    const words = new Uint32Array(flat.buffer);
    words[54_321] = (words[54_321] as number) ^ 1;
    expect(hashWeights(flat)).not.toBe(base);
    expect(hashWeights(Float32Array.from([0]))).not.toBe(hashWeights(Float32Array.from([-0])));
    expect(hashWeights(new Float32Array(1))).not.toBe(hashWeights(new Float32Array(2)));
    expect(hashWeights(flat.subarray(1))).toBe(hashWeights(flat.slice(1)));
  });

  it("covers the optimizer state: kind, step, scalars and every buffer", () => {
    const weights = seededFloats(1_000, 3);
    const adam = (): OptimizerState => ({ kind: "adam", step: 7, scalars: [0.9 ** 7, 0.999 ** 7], buffers: [seededFloats(1_000, 4), seededFloats(1_000, 5)] });
    const base = hashState(weights, adam());
    expect(hashState(weights, adam())).toBe(base);
    const changed: OptimizerState[] = [
      { ...adam(), step: 8 },
      { ...adam(), scalars: [0.9 ** 7, 0.999 ** 8] },
      { ...adam(), kind: "sgd" },
      { ...adam(), buffers: [seededFloats(1_000, 4)] },
    ];
    const flipped = adam();
    const word = new Uint32Array((flipped.buffers[1] as Float32Array).buffer);
    word[999] = (word[999] as number) ^ 1;
    changed.push(flipped);
    for (const state of changed) expect(hashState(weights, state)).not.toBe(base);
  });
});
