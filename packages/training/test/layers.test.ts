import type { ModelSpec } from "@crowdtrain/protocol";
import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { buildModel, buildStage, layerParams, modelLayers, readWeights } from "../src/index.ts";
import { seededFloats, useCpu } from "./helpers.ts";

beforeAll(useCpu);

const CASES: [string, ModelSpec, number[], number][] = [
  ["mlp on images", { kind: "mlp", hidden: [12, 8], activation: "relu" }, [6, 5, 1], 4],
  ["mlp on flat rows", { kind: "mlp", hidden: [5], activation: "tanh" }, [7], 3],
  ["cnn, odd sides", { kind: "cnn", filters: [3, 4], kernelSize: 3, dense: 6 }, [9, 7, 2], 5],
];

describe("modelLayers", () => {
  it.each(CASES)("%s: names, shapes and weights are what tfjs builds", (_name, spec, inputShape, classes) => {
    const layers = modelLayers(spec, inputShape, classes);
    const model = buildModel(spec, inputShape, classes, 3);
    try {
      expect(model.layers.map((l) => l.name)).toEqual(layers.map((l) => l.name));
      model.layers.forEach((built, i) => {
        const info = layers[i]!;
        expect((built.outputShape as number[]).slice(1), info.name).toEqual([...info.outputShape]);
        expect(built.countParams(), info.name).toBe(info.params);
        if (i > 0) expect(info.inputShape).toEqual(layers[i - 1]!.outputShape);
      });
      expect(layerParams(layers)).toBe(model.countParams());
    } finally {
      model.dispose();
    }
  });
});

describe("buildStage", () => {
  it.each(CASES)("%s: stages chained compute the whole model's outputs from the same initial weights", (_name, spec, inputShape, classes) => {
    const layers = modelLayers(spec, inputShape, classes);
    const weighted = layers.flatMap((l, i) => (l.params > 0 ? [i] : []));
    // Cut before the second weighted layer: the first stage holds the first layer with weights (and anything weightless before it).
    const cut = weighted[1]!;
    const whole = buildModel(spec, inputShape, classes, 3);
    const first = buildStage(layers, 0, cut, 3);
    const second = buildStage(layers, cut, layers.length, 3);
    const xs = tf.tensor(seededFloats(4 * inputShape.reduce((a, b) => a * b, 1), 8), [4, ...inputShape]);
    try {
      const joined = new Float32Array([...readWeights(first), ...readWeights(second)]);
      expect(joined).toEqual(readWeights(whole));
      const expected = tf.tidy(() => (whole.predict(xs) as tf.Tensor).dataSync());
      const chained = tf.tidy(() => (second.predict(first.predict(xs) as tf.Tensor) as tf.Tensor).dataSync());
      expect(Array.from(chained)).toEqual(Array.from(expected));
    } finally {
      for (const model of [whole, first, second]) model.dispose();
      xs.dispose();
    }
  });

  it("refuses a range that is not a stage", () => {
    const layers = modelLayers(CASES[0]![1], CASES[0]![2], 4);
    expect(() => buildStage(layers, 2, 2, 1)).toThrow(/\[2, 2\)/);
    expect(() => buildStage(layers, 0, layers.length + 1, 1)).toThrow(/within \[0, 4\]/);
  });
});
