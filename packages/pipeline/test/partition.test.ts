import { describe, expect, it } from "vitest";
import { modelLayers, type LayerInfo } from "@crowdtrain/training";
import { parseJob, type ModelSpec } from "@crowdtrain/protocol";
import { fewestStages, partitionLayers, PartitionError, stageMemoryBytes, type StageMemoryModel } from "../src/partition.ts";
import { buildPipelinePlan, checkFitsOneTab } from "../src/plan-builder.ts";

const memory: StageMemoryModel = { optimizerBuffers: 2, microRows: 16, micros: 4, schedule: "gpipe" };
const mlp = (hidden: number[]): LayerInfo[] => modelLayers({ kind: "mlp", hidden, activation: "relu" }, [28, 28, 1], 10);
const cnn: ModelSpec = { kind: "cnn", filters: [8, 16], kernelSize: 3, dense: 64 };

/** Every contiguous cut into `stages` stages at weighted layers, by brute force: the reference. */
function allCuts(layers: readonly LayerInfo[], stages: number): number[][] {
  const points = layers.flatMap((layer, i) => (layer.params > 0 && i > layers.findIndex((l) => l.params > 0) ? [i] : []));
  const out: number[][] = [];
  const pick = (start: number, chosen: number[]): void => {
    if (chosen.length === stages - 1) {
      out.push(chosen);
      return;
    }
    for (let i = start; i < points.length; i++) pick(i + 1, [...chosen, points[i] as number]);
  };
  pick(0, []);
  return out;
}

describe("cutting a model into stages", () => {
  it("covers the model with consecutive stages, each holding weights, weightless layers kept with the layer before", () => {
    const layers = modelLayers(cnn, [28, 28, 1], 10);
    for (let stages = 1; stages <= 4; stages++) {
      const cuts = partitionLayers({ layers, stages, memory });
      expect(cuts).toHaveLength(stages);
      expect(cuts[0]?.from).toBe(0);
      expect(cuts.at(-1)?.to).toBe(layers.length);
      cuts.forEach((cut, k) => {
        if (k > 0) expect(cut.from).toBe(cuts[k - 1]?.to);
        expect(cut.params).toBeGreaterThan(0);
        // A stage starts at a layer with weights (or at the model's first layer).
        if (k > 0) expect(layers[cut.from]?.params).toBeGreaterThan(0);
      });
      expect(cuts.reduce((sum, cut) => sum + cut.params, 0)).toBe(layers.reduce((sum, l) => sum + l.params, 0));
    }
  });

  it("finds the cut whose slowest stage is fastest (checked against every cut, by brute force)", () => {
    const layers = mlp([256, 32, 512, 16, 128]);
    for (let stages = 1; stages <= 6; stages++) {
      const cuts = partitionLayers({ layers, stages, memory });
      const slowest = Math.max(...cuts.map((c) => c.cost));
      const bounds = (points: number[]): number[] => [0, ...points, layers.length];
      const best = Math.min(
        ...allCuts(layers, stages).map((points) => {
          const b = bounds(points);
          return Math.max(...b.slice(1).map((to, k) => layers.slice(b[k], to).reduce((s, l) => s + l.flops, 0)));
        }),
      );
      expect(slowest, `${stages} stages`).toBe(best);
    }
  });

  it("balances by measured costs when given, not by FLOPs", () => {
    const layers = mlp([64, 64, 64]);
    // FLOPs make the first dense layer (784 inputs) the heaviest; measured costs say the last is.
    const measured = layers.map((_, i) => (i === layers.length - 1 ? 100 : 1));
    const cuts = partitionLayers({ layers, stages: 2, memory, costs: measured });
    expect(cuts[1]).toMatchObject({ from: layers.length - 1, to: layers.length, cost: 100 });
    expect(partitionLayers({ layers, stages: 2, memory })[0]?.to).toBeLessThan(layers.length - 1);
    expect(() => partitionLayers({ layers, stages: 2, memory, costs: [1] })).toThrow(RangeError);
    expect(() => partitionLayers({ layers, stages: 2, memory, costs: layers.map(() => Number.NaN) })).toThrow(RangeError);
  });

  it("honours a memory budget: every stage fits it, or a PartitionError says what the model needs", () => {
    const layers = mlp([1024, 1024, 1024]);
    const whole = stageMemoryBytes(layers, 0, layers.length, memory);
    const budget = Math.ceil(whole * 0.45);
    expect(() => partitionLayers({ layers, stages: 1, memory, budgetBytes: budget })).toThrow(PartitionError);
    expect(() => partitionLayers({ layers, stages: 2, memory, budgetBytes: budget })).toThrow(/fits a tab's .* MiB \(the whole model needs .* MiB/);
    const cuts = partitionLayers({ layers, stages: 3, memory, budgetBytes: budget });
    for (const cut of cuts) expect(cut.memoryBytes).toBeLessThanOrEqual(budget);
    expect(fewestStages({ layers, memory, budgetBytes: budget }, 4)).toHaveLength(3);
    expect(fewestStages({ layers, memory, budgetBytes: 1000 }, 4)).toBeUndefined();
  });

  it("counts stashed micro-batches by schedule: GPipe all M, 1F1B at most K − k, the last stage one", () => {
    const layers = mlp([64, 64]);
    const gpipe = stageMemoryBytes(layers, 2, 3, { ...memory, micros: 8 }, 3, 1);
    const oneFOneB = stageMemoryBytes(layers, 2, 3, { ...memory, micros: 8, schedule: "1f1b" }, 3, 1);
    // Stage 1 of 3's input is 64 floats a row: 8 − 2 = 6 fewer micro-batches of 16 rows stashed.
    expect(gpipe - oneFOneB).toBe(4 * 16 * 64 * 6);
    // The last stage turns each micro-batch around as it arrives, under either schedule.
    expect(stageMemoryBytes(layers, 2, 4, { ...memory, micros: 8 }, 2, 1)).toBe(stageMemoryBytes(layers, 2, 4, { ...memory, micros: 8, schedule: "1f1b" }, 2, 1));
  });

  it("refuses more stages than layers with weights", () => {
    expect(() => partitionLayers({ layers: mlp([32]), stages: 3, memory })).toThrow(/at most 2 stages/);
    expect(() => partitionLayers({ layers: mlp([32]), stages: 0, memory })).toThrow(RangeError);
  });
});

describe("the plan of replicas × stages", () => {
  const layers = modelLayers(cnn, [28, 28, 1], 10);
  const request = { layers, stages: 2, microBatches: 4, schedule: "gpipe" as const, batchSize: 64, optimizerBuffers: 2 };
  const members = (n: number, memoryBytes?: (i: number) => number) => Array.from({ length: n }, (_, i) => ({ id: `m${i}`, ...(memoryBytes ? { memoryBytes: memoryBytes(i) } : {}) }));

  it("forms ⌊N/K⌋ replicas of K stages, names each member once, and leaves the rest spare", () => {
    const result = buildPipelinePlan({ ...request, members: members(5) });
    if (!result.ok) throw new Error(result.reason);
    expect(result.plan.replicas).toHaveLength(2);
    expect(result.plan.replicas.every((row) => row.length === 2)).toBe(true);
    expect(new Set(result.plan.replicas.flat()).size).toBe(4);
    expect(result.spares).toHaveLength(1);
    expect(parseJob({ name: "x", dataset: "mnist", model: cnn, optimizer: { kind: "adam", learningRate: 0.001 }, batchSize: 64, rounds: 1, parallelism: { stages: 2, microBatches: 4 } }).parallelism).toEqual({ stages: 2, microBatches: 4, schedule: "gpipe" });
  });

  it("gives the stage needing most memory to the members lending most, and cuts for the smallest chosen budget", () => {
    const whole = stageMemoryBytes(layers, 0, layers.length, { optimizerBuffers: 2, microRows: 8, micros: 4, schedule: "gpipe" });
    const result = buildPipelinePlan({ ...request, members: members(4, (i) => whole * (0.7 + i * 0.1)) });
    if (!result.ok) throw new Error(result.reason);
    const heaviest = result.cuts.reduce((best, cut, k) => (cut.memoryBytes > (result.cuts[best]?.memoryBytes ?? 0) ? k : best), 0);
    // m3 and m2 lend the most.
    expect(result.plan.replicas.map((row) => row[heaviest]).sort()).toEqual(["m2", "m3"]);
    for (const cut of result.cuts) expect(cut.memoryBytes).toBeLessThanOrEqual(whole * 0.7);
  });

  it("with fewer members than stages, plans fewer stages if they fit, and says why not otherwise", () => {
    const three = buildPipelinePlan({ ...request, stages: 4, members: members(3) });
    expect(three.ok && three.plan.stages).toHaveLength(3);
    const whole = stageMemoryBytes(layers, 0, layers.length, { optimizerBuffers: 2, microRows: 16, micros: 4, schedule: "gpipe" });
    const tooSmall = buildPipelinePlan({ ...request, stages: 2, members: members(1, () => whole / 2) });
    expect(tooSmall).toMatchObject({ ok: false, reason: expect.stringMatching(/no cut of the model into 1 stage fits/) });
  });

  it("a job too big for one tab's budget is refused for one stage with a clear message and plans across stages", () => {
    const big = modelLayers({ kind: "mlp", hidden: [2048, 2048], activation: "relu" }, [28, 28, 1], 10);
    const budget = 100 * 2 ** 20;
    const bigRequest = { ...request, layers: big };
    expect(checkFitsOneTab(bigRequest, budget)).toMatch(/does not fit one tab.*parallelism.stages above 1/);
    expect(checkFitsOneTab(request, budget)).toBeUndefined();
    const result = buildPipelinePlan({ ...bigRequest, stages: 3, members: members(3), tabMemoryBytes: budget });
    expect(result.ok && result.cuts.every((cut) => cut.memoryBytes <= budget)).toBe(true);
  });
});
