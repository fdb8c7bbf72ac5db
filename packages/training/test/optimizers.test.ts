import * as tf from "@tensorflow/tfjs";
import type { OptimizerSpec } from "@crowdtrain/protocol";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createOptimizer, hashState, type OptimizerState } from "../src/index.ts";

const hashWeights = (weights: Float32Array): string => hashState(weights, { kind: "sgd", step: 0, scalars: [], buffers: [] });
import { seededFloats, useCpu } from "./helpers.ts";

beforeAll(useCpu);
afterEach(() => {
  vi.restoreAllMocks();
});

const SIZE = 257;
const STEPS = 20;
const gradients = Array.from({ length: STEPS }, (_, t) => seededFloats(SIZE, 100 + t, -2, 2));
const initial = seededFloats(SIZE, 7);

const specs: { spec: OptimizerSpec; reference: () => tf.Optimizer }[] = [
  { spec: { kind: "adam", learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, reference: () => tf.train.adam(0.01, 0.9, 0.999, 1e-7) },
  { spec: { kind: "adam", learningRate: 0.1, beta1: 0.5, beta2: 0.9, epsilon: 1e-3 }, reference: () => tf.train.adam(0.1, 0.5, 0.9, 1e-3) },
  { spec: { kind: "sgd", learningRate: 0.05, momentum: 0.9, nesterov: false }, reference: () => tf.train.momentum(0.05, 0.9) },
  { spec: { kind: "sgd", learningRate: 0.05, momentum: 0, nesterov: false }, reference: () => tf.train.sgd(0.05) },
  // DiLoCo's outer optimizer (job.ts DEFAULT_OUTER_OPTIMIZER).
  { spec: { kind: "sgd", learningRate: 0.7, momentum: 0.9, nesterov: true }, reference: () => tf.train.momentum(0.7, 0.9, true) },
];

function runJs(spec: OptimizerSpec, steps = STEPS): Float32Array {
  const weights = initial.slice();
  const optimizer = createOptimizer(spec, SIZE);
  for (const g of gradients.slice(0, steps)) optimizer.step(weights, g);
  return weights;
}

describe.each(specs)("$spec.kind $spec.learningRate", ({ spec, reference }) => {
  it(`matches TF.js over ${STEPS} steps`, () => {
    const variable = tf.variable(tf.tensor1d(initial));
    const optimizer = reference();
    for (const g of gradients) {
      const grad = tf.tensor1d(g);
      optimizer.applyGradients({ [variable.name]: grad });
      grad.dispose();
    }
    const expected = variable.dataSync();
    // (TF.js optimizers keep a few scalars after dispose(); that is the reference, not our code.)
    optimizer.dispose();
    variable.dispose();

    const actual = runJs(spec);
    let worst = 0;
    // Relative beyond 1: the outer optimizer's lr 0.7 moves weights to hundreds, where float32 steps are ~1e-5.
    for (let i = 0; i < SIZE; i++) worst = Math.max(worst, Math.abs((actual[i] as number) - (expected[i] as number)) / Math.max(1, Math.abs(expected[i] as number)));
    // Only rounding differs: TF rounds to float32 after every op, the JS optimizer once per value.
    expect(worst).toBeLessThan(1e-5);
    expect(Array.from(actual)).not.toEqual(Array.from(initial));
  });

  it("is bit-for-bit reproducible and never calls Math.pow", () => {
    const pow = vi.spyOn(Math, "pow");
    expect(hashWeights(runJs(spec))).toBe(hashWeights(runJs(spec)));
    expect(pow).not.toHaveBeenCalled();
  });

  it("continues bit-for-bit from a snapshot, after a structured clone", () => {
    const weights = initial.slice();
    const first = createOptimizer(spec, SIZE);
    for (const g of gradients.slice(0, 7)) first.step(weights, g);
    const snapshot = structuredClone(first.state());
    const saved = weights.slice();
    first.step(weights, new Float32Array(SIZE).fill(1e6)); // the live optimizer moves on; the snapshot must not
    const resumed = createOptimizer(spec, SIZE);
    resumed.restore(snapshot);
    for (const g of gradients.slice(7)) resumed.step(saved, g);
    expect(hashWeights(saved)).toBe(hashWeights(runJs(spec)));
    expect(resumed.state().step).toBe(STEPS);
  });
});

describe("DiLoCo's outer step (Nesterov SGD)", () => {
  it("matches a float64 reference of v = m*v + d; w = w - lr*(d + m*v), rounded to float32 once per store", () => {
    const spec: OptimizerSpec = { kind: "sgd", learningRate: 0.7, momentum: 0.9, nesterov: true };
    const weights = initial.slice();
    const optimizer = createOptimizer(spec, SIZE);
    const w = Array.from(initial);
    const v = new Array<number>(SIZE).fill(0);
    for (const d of gradients.slice(0, 5)) {
      optimizer.step(weights, d);
      for (let i = 0; i < SIZE; i++) {
        v[i] = Math.fround(0.9 * (v[i] as number) + (d[i] as number));
        w[i] = Math.fround((w[i] as number) - 0.7 * ((d[i] as number) + 0.9 * (v[i] as number)));
      }
    }
    expect(Array.from(weights)).toEqual(w);
    // Not plain momentum: the Nesterov look-ahead changes the result.
    expect(Array.from(runJs({ ...spec, nesterov: false }, 5))).not.toEqual(w);
  });
});

describe("createOptimizer", () => {
  const adam: OptimizerSpec = { kind: "adam", learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };

  it("rejects wrong lengths", () => {
    const optimizer = createOptimizer(adam, 4);
    expect(() => optimizer.step(new Float32Array(4), new Float32Array(3))).toThrow("size 4 got 4 weights and 3 gradient values");
  });

  it("rejects a snapshot of another kind or size", () => {
    const optimizer = createOptimizer(adam, 4);
    const sgd = createOptimizer({ kind: "sgd", learningRate: 0.1, momentum: 0.5, nesterov: false }, 4);
    expect(() => optimizer.restore(sgd.state())).toThrow("kind sgd, expected adam");
    const wrongSize: OptimizerState = { ...optimizer.state(), buffers: [new Float32Array(4), new Float32Array(5)] };
    expect(() => optimizer.restore(wrongSize)).toThrow("Float32Array of 4");
  });

  it("hands out copies: editing a snapshot does not touch the optimizer", () => {
    const optimizer = createOptimizer(adam, 4);
    optimizer.step(new Float32Array(4), Float32Array.from([1, 2, 3, 4]));
    const snapshot = optimizer.state();
    snapshot.buffers[0]?.fill(0);
    expect(Array.from(optimizer.state().buffers[0] ?? [])).not.toEqual([0, 0, 0, 0]);
  });
});
