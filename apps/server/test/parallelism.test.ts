import { describe, expect, it } from "vitest";
import { parseJob } from "@crowdtrain/protocol";
import { parseManifest } from "@crowdtrain/training";
import { combineLayerHashes } from "@crowdtrain/training";
import { parallelismRefusal, pipelineCoordination, trainerNeedsBytes } from "../src/training/parallelism.ts";

const manifest = parseManifest({
  format: "crowdtrain-dataset",
  version: 1,
  name: "mnist",
  inputShape: [28, 28, 1],
  classes: 10,
  featureScale: 255,
  train: { count: 1, shards: [{ file: "train-0.bin", count: 1 }] },
  test: { count: 1, shards: [{ file: "test-0.bin", count: 1 }] },
});
const job = (parallelism: object, hidden = [128]) =>
  parseJob({ name: "p", dataset: "mnist", model: { kind: "mlp", hidden }, optimizer: { kind: "adam", learningRate: 0.001 }, batchSize: 256, rounds: 10, parallelism });

describe("the job's parallelism at start", () => {
  it("is trained when it is one stage with no budget, or one that fits", () => {
    expect(parallelismRefusal(job({}), manifest)).toBeUndefined();
    // 784·128 + 128 + 1290 weights × (1 + gradient + adam's 2) × 4 bytes ≈ 1.6 MiB, plus activations.
    expect(parallelismRefusal(job({ tabMemoryMiB: 8 }), manifest)).toBeUndefined();
  });

  it("is refused, saying why, when the whole model does not fit a tab's budget", () => {
    const refusal = parallelismRefusal(job({ tabMemoryMiB: 16 }, [4096, 1024]), manifest);
    expect(refusal).toMatch(/^the whole model does not fit one tab: no cut of the model into 1 stage fits a tab's 16\.0 MiB \(the whole model needs \d+\.\d MiB/);
    expect(refusal).toMatch(/give it parallelism\.stages above 1$/);
  });

  it("counts a trainer's whole batch in one pass: micro-batches do not shrink a one-stage job's need", () => {
    const whole = trainerNeedsBytes(job({}), manifest);
    expect(trainerNeedsBytes(job({ microBatches: 8 }), manifest)).toBe(whole);
    // Each row more: its 784 inputs, and its layers' outputs (flatten 784, 128, 10) and their gradients.
    expect(trainerNeedsBytes(parseJob({ ...job({}), batchSize: 512 }), manifest) - whole).toBe(4 * 256 * (784 + 2 * (784 + 128 + 10)));
  });

  it("trains a model cut into stages that fit the budget, and refuses one no cut of which fits", () => {
    expect(parallelismRefusal(job({ stages: 2, microBatches: 4 }), manifest)).toBeUndefined();
    const big = job({ stages: 2, microBatches: 4, tabMemoryMiB: 40 }, [4096, 1024]);
    expect(parallelismRefusal(parseJob({ ...big, parallelism: { ...big.parallelism, tabMemoryMiB: undefined } }), manifest)).toBeUndefined();
    expect(parallelismRefusal(big, manifest)).toMatch(/^no cut of the model into 2 stages fits a tab: /);
    // A stage needs less than the whole model: a trainer lending that much is enough.
    expect(trainerNeedsBytes(job({ stages: 2, microBatches: 4 }, [512, 512]), manifest)).toBeLessThan(trainerNeedsBytes(job({}, [512, 512]), manifest));
  });

  it("plans pipeline rounds from the members: R replicas × K stages, spares named, and combines layer hashes", () => {
    const coordination = pipelineCoordination(job({ stages: 2, microBatches: 4 }, [64, 32]), manifest);
    const planned = coordination.plan(["a", "b", "c", "d", "e"].map((id) => ({ id })));
    expect(planned.ok && planned.plan).toMatchObject({ kind: "pipeline", microBatches: 4, schedule: "gpipe" });
    expect(planned.ok && planned.plan.replicas.flat().sort()).toEqual(["a", "b", "c", "d"]);
    expect(planned.ok && planned.plan.stages.at(-1)?.to).toBe(4);
    expect(coordination.combine(["a".repeat(64)])).toBe(combineLayerHashes(["a".repeat(64)]));
    // A model over one tab's budget: a lone tab gets no plan (and why), two tabs train it as two stages.
    const big = pipelineCoordination(job({ stages: 2, microBatches: 4, tabMemoryMiB: 32 }, [1024, 1024]), manifest);
    expect(parallelismRefusal(job({ tabMemoryMiB: 32 }, [1024, 1024]), manifest)).toMatch(/^the whole model does not fit one tab/);
    const alone = big.plan([{ id: "a" }]);
    expect(alone.ok === false && alone.reason).toMatch(/^no cut of the model into 1 stage fits a tab.s 32\.0 MiB/);
    const pair = big.plan([{ id: "a" }, { id: "b" }]);
    expect(pair.ok && pair.plan.stages.length).toBe(2);
    // A budget no member lends enough for: no plan, and why.
    const tiny = coordination.plan([{ id: "a", memoryBytes: 1024 }, { id: "b", memoryBytes: 1024 }]);
    expect(tiny.ok).toBe(false);
  });
});
