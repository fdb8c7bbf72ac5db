import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import type { ModelSpec, OptimizerSpec } from "@crowdtrain/protocol";
import { buildModel, buildStage, combineLayerHashes, computeGradient, createOptimizer, hashState, layerHashes, modelLayers, pipelineStateHash, readWeights, writeWeights } from "@crowdtrain/training";
import { joinStageStates, microBatchRows, partitionLayers, stageSlices, stageState, StageStateError, type StageState } from "../src/index.ts";
import { runLocalPipeline } from "./support/local-pipeline.ts";

beforeAll(async () => {
  await tf.setBackend("cpu");
  await tf.ready();
});

const SPEC: ModelSpec = { kind: "mlp", hidden: [12, 10, 8], activation: "tanh" };
const INPUT = [5, 5, 1];
const CLASSES = 4;
const ADAM: OptimizerSpec = { kind: "adam", learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
const layers = modelLayers(SPEC, INPUT, CLASSES);
const cuts = partitionLayers({ layers, stages: 3, memory: { optimizerBuffers: 2, microRows: 4, micros: 2, schedule: "1f1b" } });
const slices = stageSlices(layers, cuts);
const seeded = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 97 + i * 1.3) * 0.1);

describe("a stage's share of the model state", () => {
  it("slices cover the whole flat weights in stage order", () => {
    expect(slices[0]?.offset).toBe(0);
    slices.forEach((slice, k) => k > 0 && expect(slice.offset).toBe(slices[k - 1]!.offset + slices[k - 1]!.length));
    const whole = buildModel(SPEC, INPUT, CLASSES, 3);
    try {
      expect(slices.at(-1)!.offset + slices.at(-1)!.length).toBe(readWeights(whole).length);
      // Each stage built alone holds exactly its slice of the whole model's weights.
      cuts.forEach((cut, k) => {
        const stage = buildStage(layers, cut.from, cut.to, 3);
        expect(readWeights(stage)).toEqual(readWeights(whole).slice(slices[k]!.offset, slices[k]!.offset + slices[k]!.length));
        stage.dispose();
      });
    } finally {
      whole.dispose();
    }
  });

  it("a pipeline state's hash is its layers' hashes combined: the stages' layer hashes give the whole state's, whatever the cut", () => {
    const total = layers.reduce((sum, layer) => sum + layer.params, 0);
    const whole: StageState = { weights: seeded(total, 1), optimizer: { kind: "adam", step: 3, scalars: [0.5, 0.25], buffers: [seeded(total, 2), seeded(total, 3)] } };
    const params = layers.map((layer) => layer.params);
    const expected = pipelineStateHash(whole.weights, whole.optimizer, params);
    for (const stages of [1, 2, 3]) {
      const cut = partitionLayers({ layers, stages, memory: { optimizerBuffers: 2, microRows: 4, micros: 2, schedule: "gpipe" } });
      const perStage = stageSlices(layers, cut).flatMap((slice, k) => {
        const part = stageState(whole, slice);
        return layerHashes(part.weights, part.optimizer, params.slice(cut[k]!.from, cut[k]!.to));
      });
      expect(combineLayerHashes(perStage), `${stages} stages`).toBe(expected);
    }
    // Every bit counts: one weight, one optimizer buffer value, the step.
    const flipped = { ...whole, weights: whole.weights.slice() };
    flipped.weights[total - 1] = -flipped.weights[total - 1]!;
    expect(pipelineStateHash(flipped.weights, flipped.optimizer, params)).not.toBe(expected);
    const buffers = whole.optimizer.buffers.map((b) => b.slice());
    buffers[1]![0] = 1;
    expect(pipelineStateHash(whole.weights, { ...whole.optimizer, buffers }, params)).not.toBe(expected);
    expect(pipelineStateHash(whole.weights, { ...whole.optimizer, step: 4 }, params)).not.toBe(expected);
    expect(() => layerHashes(whole.weights, whole.optimizer, params.slice(0, -1))).toThrow(RangeError);
  });

  it("stages stepping their own optimizers on their slices of a gradient commit the whole optimizer's bits and hash", () => {
    const size = slices.reduce((sum, s) => sum + s.length, 0);
    const weights = seeded(size, 1);
    const whole = createOptimizer(ADAM, size);
    const stages = slices.map((slice) => ({ slice, weights: weights.slice(slice.offset, slice.offset + slice.length), optimizer: createOptimizer(ADAM, slice.length) }));
    for (let step = 0; step < 3; step++) {
      const gradient = seeded(size, 10 + step);
      whole.step(weights, gradient);
      for (const stage of stages) stage.optimizer.step(stage.weights, gradient.slice(stage.slice.offset, stage.slice.offset + stage.slice.length));
    }
    const joined = joinStageStates(stages.map((s) => ({ weights: s.weights, optimizer: s.optimizer.state() })));
    expect(joined.weights).toEqual(weights);
    expect(hashState(joined.weights, joined.optimizer)).toBe(hashState(weights, whole.state()));
    // And a replacement tab loading stage k from the committed whole state gets that stage's exact state.
    const committed: StageState = { weights, optimizer: whole.state() };
    stages.forEach((stage, k) => {
      const loaded = stageState(committed, slices[k]!);
      expect(hashState(loaded.weights, loaded.optimizer)).toBe(hashState(stage.weights, stage.optimizer.state()));
    });
  });

  it("joining refuses stages whose optimizers disagree", () => {
    const a = createOptimizer(ADAM, 2);
    const b = createOptimizer(ADAM, 3);
    b.step(new Float32Array(3), seeded(3, 2));
    expect(() => joinStageStates([{ weights: new Float32Array(2), optimizer: a.state() }, { weights: new Float32Array(3), optimizer: b.state() }])).toThrow(StageStateError);
    expect(() => joinStageStates([{ weights: new Float32Array(4), optimizer: a.state() }])).toThrow(/buffers do not match its 4 weights/);
    expect(() => joinStageStates([])).toThrow(/no stage states/);
    expect(() => stageState({ weights: new Float32Array(2), optimizer: a.state() }, { offset: 1, length: 2 })).toThrow(/outside a state of 2/);
  });

  it("three pipeline steps with per-stage Adam track the single model's three steps", async () => {
    const rows = 8;
    const xs = tf.tensor(seeded(rows * 25, 5), [rows, ...INPUT]);
    const ys = tf.oneHot(tf.tensor1d([0, 1, 2, 3, 3, 2, 1, 0], "int32"), CLASSES).toFloat();
    const whole = buildModel(SPEC, INPUT, CLASSES, 3);
    const wholeWeights = readWeights(whole);
    const wholeOptimizer = createOptimizer(ADAM, wholeWeights.length);
    const models = cuts.map((cut) => buildStage(layers, cut.from, cut.to, 3));
    const stageWeights = models.map(readWeights);
    const optimizers = stageWeights.map((w) => createOptimizer(ADAM, w.length));
    const microRows = microBatchRows(rows, 2);
    const inputs = [tf.slice(xs, 0, 4), tf.slice(xs, 4, 4)];
    const labels = [tf.slice(ys, 0, 4), tf.slice(ys, 4, 4)];
    try {
      for (let step = 0; step < 3; step++) {
        const reference = computeGradient(whole, xs, ys);
        wholeOptimizer.step(wholeWeights, reference.gradient);
        writeWeights(whole, wholeWeights);
        const results = await runLocalPipeline({ layers, cuts, models, schedule: "1f1b", microRows, inputs, labels, attempt: step + 1 });
        expect(results.at(-1)?.loss).toBeCloseTo(reference.loss, 5);
        results.forEach((result, k) => {
          optimizers[k]!.step(stageWeights[k]!, result.gradient);
          writeWeights(models[k]!, stageWeights[k]!);
        });
      }
      const joined = joinStageStates(stageWeights.map((weights, k) => ({ weights, optimizer: optimizers[k]!.state() })));
      const worst = joined.weights.reduce((max, w, i) => Math.max(max, Math.abs(w - wholeWeights[i]!)), 0);
      expect(worst).toBeLessThan(1e-5);
      expect(joined.optimizer.step).toBe(3);
    } finally {
      for (const model of [whole, ...models]) model.dispose();
      tf.dispose([xs, ys, ...inputs, ...labels]);
    }
  });
});
