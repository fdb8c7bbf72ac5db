// The auditor's replay of a DiLoCo lease: the same pseudo-gradient a tab computes, with the event
// loop handed back between inner steps (the coordinator's thread is the auditor's), and stopped
// mid-way once its audit is withdrawn.
import * as tf from "@tensorflow/tfjs";
import { parseJob } from "@crowdtrain/protocol";
import { buildModel, parseManifest, runInnerStepsSync, type Dataset } from "@crowdtrain/training";
import { beforeAll, describe, expect, it } from "vitest";
import { AUDIT_WITHDRAWN, Auditor } from "../src/training/auditor.ts";

const STEPS = 16;
const COUNT = 64;
const manifest = parseManifest({
  format: "crowdtrain-dataset",
  version: 1,
  name: "tiny",
  inputShape: [6],
  classes: 3,
  featureScale: 1 / 255,
  train: { count: COUNT, shards: [{ file: "train-0", count: COUNT }] },
  test: { count: 0, shards: [] },
});
const train: Dataset = {
  count: COUNT,
  featureBytes: 6,
  featureScale: 1 / 255,
  features: Uint8Array.from({ length: COUNT * 6 }, (_, k) => (k * 37) % 256),
  labels: Uint8Array.from({ length: COUNT }, (_, k) => k % 3),
};
const job = parseJob({
  name: "auditor",
  dataset: "tiny",
  model: { kind: "mlp", hidden: [5] },
  optimizer: { kind: "sgd", learningRate: 0.1, momentum: 0 },
  algorithm: { kind: "diloco", innerSteps: STEPS },
  batchSize: COUNT,
  rounds: 1,
});
const lease = Array.from({ length: COUNT }, (_, k) => k);

beforeAll(async () => {
  await tf.setBackend("cpu");
});

describe("Auditor (DiLoCo)", () => {
  it("replays the lease as a tab does, letting timers run between its inner steps", async () => {
    const auditor = new Auditor(job, manifest, async () => train);
    const model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
    const start = Float32Array.from({ length: 6 * 5 + 5 + 5 * 3 + 3 }, (_, k) => Math.sin(k) / 4);
    const expected = runInnerStepsSync({ model, optimizer: job.optimizer, train, manifest, start, lease, steps: STEPS }).pseudoGradient;
    model.dispose();
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 0);
    try {
      const replayed = await auditor.recompute(start, lease);
      expect(replayed).toEqual(expected);
      // Each tick needs the thread: all 16 steps at once would leave room for one at most.
      expect(ticks).toBeGreaterThan(1);
    } finally {
      clearInterval(ticker);
      await auditor.close();
    }
  });

  it("stops at the next step once the audit is withdrawn, frees its tensors, and the next audit still runs", async () => {
    const auditor = new Auditor(job, manifest, async () => train);
    const start = new Float32Array(6 * 5 + 5 + 5 * 3 + 3).fill(0.01);
    await auditor.recompute(start, lease); // builds the model: its tensors are the baseline
    const before = tf.memory().numTensors;
    let asked = 0;
    await expect(auditor.recompute(start, lease, () => ++asked < 4)).rejects.toThrow(`${AUDIT_WITHDRAWN} while it was recomputed`);
    // Asked when its turn came, then after each step until the answer changed: 3 steps ran, not 16.
    expect(asked).toBe(4);
    expect(tf.memory().numTensors).toBe(before);
    await expect(auditor.recompute(start, lease)).resolves.toHaveLength(start.length);
    await auditor.close();
  });
});
