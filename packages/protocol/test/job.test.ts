import { describe, expect, it } from "vitest";
import { committedOptimizer, DEFAULT_OUTER_OPTIMIZER, DEFAULT_PARALLELISM, MAX_MICRO_BATCHES, MAX_PIPELINE_STAGES, innerSteps, JobError, MAX_BATCH_SIZE, MAX_INNER_STEPS, roundSamples, MAX_CNN_FILTERS, MAX_DENSE_UNITS, MAX_KERNEL_SIZE, parseJob } from "../src/index.ts";

const good = {
  name: "mnist-mlp",
  dataset: "mnist",
  model: { kind: "mlp", hidden: [128] },
  optimizer: { kind: "adam", learningRate: 0.001 },
  batchSize: 96,
  epochs: 2,
};

describe("a job's parallelism", () => {
  const problemsOf = (job: unknown): string => {
    try {
      parseJob(job);
    } catch (error) {
      if (error instanceof JobError) return error.problems.join("\n");
      throw error;
    }
    return "";
  };

  it("defaults to one stage, and keeps stages, micro-batches, schedule and a tab's memory when given", () => {
    expect(parseJob(good).parallelism).toEqual(DEFAULT_PARALLELISM);
    expect(parseJob({ ...good, parallelism: { stages: 4, microBatches: 8, schedule: "1f1b", tabMemoryMiB: 512 } }).parallelism).toEqual({ stages: 4, microBatches: 8, schedule: "1f1b", tabMemoryMiB: 512 });
  });

  it("refuses each field out of bounds, an unknown field, and what a pipeline cannot run, naming it", () => {
    expect(problemsOf({ ...good, parallelism: { stages: MAX_PIPELINE_STAGES + 1 } })).toMatch(/parallelism\.stages: at most 16 stages/);
    expect(problemsOf({ ...good, parallelism: { microBatches: MAX_MICRO_BATCHES + 1 } })).toMatch(/parallelism\.microBatches: at most 256 micro-batches/);
    expect(problemsOf({ ...good, parallelism: { stages: 0 } })).toMatch(/parallelism\.stages/);
    expect(problemsOf({ ...good, parallelism: { stages: 2.5 } })).toMatch(/parallelism\.stages/);
    expect(problemsOf({ ...good, parallelism: { schedule: "zero-bubble" } })).toMatch(/parallelism\.schedule/);
    expect(problemsOf({ ...good, parallelism: { tabMemoryMiB: 0 } })).toMatch(/parallelism\.tabMemoryMiB/);
    expect(problemsOf({ ...good, parallelism: { replicas: 2 } })).toMatch(/parallelism\.replicas/);
    expect(problemsOf({ ...good, parallelism: { stages: 2 }, codec: "int8" })).toMatch(/parallelism\.stages above 1 needs algorithm "sync", aggregation "mean" and codec "dense"/);
    expect(problemsOf({ ...good, parallelism: { stages: 2 }, aggregation: "centered-clip" })).toMatch(/parallelism\.stages above 1 needs/);
    expect(problemsOf({ ...good, batchSize: 4, parallelism: { microBatches: 8 } })).toMatch(/batchSize must be at least parallelism\.microBatches/);
    // One stage runs with any algorithm, aggregation and codec, as before.
    expect(problemsOf({ ...good, parallelism: { stages: 1 }, codec: "int8" })).toBe("");
  });
});

describe("job files", () => {
  it("parses a minimal job and fills the defaults", () => {
    const job = parseJob(good);
    expect(job.model).toEqual({ kind: "mlp", hidden: [128], activation: "relu" });
    expect(job.optimizer).toEqual({ kind: "adam", learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 });
    expect(job.evalEveryRounds).toBe(10);
    expect(job.seed).toBe(1);
  });

  it("lists every problem with its path", () => {
    try {
      parseJob({ ...good, batchSize: 0, optimizer: { kind: "adam", learningRate: -1 }, model: { kind: "mlp", hidden: [128], extra: 1 } });
      throw new Error("should have failed");
    } catch (error) {
      expect(error).toBeInstanceOf(JobError);
      const problems = (error as JobError).problems.join("\n");
      expect(problems).toMatch(/batchSize/);
      expect(problems).toMatch(/optimizer\.learningRate/);
      expect(problems).toMatch(/model\.extra/);
    }
  });

  it("needs epochs or rounds, and a known model kind", () => {
    const { epochs: _epochs, ...noStop } = good;
    expect(() => parseJob(noStop)).toThrow(/epochs or rounds/);
    expect(() => parseJob({ ...good, model: { kind: "transformer" } })).toThrow(JobError);
    expect(() => parseJob("not a job")).toThrow(JobError);
    expect(parseJob(good).spotCheck).toBe(0.1);
    for (const spotCheck of [-0.1, 1.5, Number.NaN, "0.1"]) expect(() => parseJob({ ...good, spotCheck }), String(spotCheck)).toThrow(/spotCheck/);
  });

  it("defaults to sync dense rounds; diloco takes inner steps and a Nesterov outer optimizer by default", () => {
    const sync = parseJob(good);
    expect(sync.algorithm).toEqual({ kind: "sync" });
    expect(sync.codec).toBe("dense");
    expect(innerSteps(sync)).toBe(1);
    expect(roundSamples(sync)).toBe(96);
    expect(committedOptimizer(sync)).toEqual(sync.optimizer);
    const diloco = parseJob({ ...good, algorithm: { kind: "diloco", innerSteps: 8 }, codec: "int8" });
    expect(diloco.algorithm).toEqual({ kind: "diloco", innerSteps: 8, outer: DEFAULT_OUTER_OPTIMIZER });
    expect(roundSamples(diloco)).toBe(96 * 8);
    expect(committedOptimizer(diloco)).toEqual({ kind: "sgd", learningRate: 0.7, momentum: 0.9, nesterov: true });
    expect(problemsOf({ ...good, algorithm: { kind: "diloco", innerSteps: 0 } })[0]).toMatch(/^algorithm\.innerSteps: /);
    expect(problemsOf({ ...good, algorithm: { kind: "diloco", innerSteps: MAX_INNER_STEPS + 1 } })[0]).toMatch(/^algorithm\.innerSteps: /);
    expect(problemsOf({ ...good, batchSize: MAX_BATCH_SIZE, algorithm: { kind: "diloco", innerSteps: 1000 } }).join()).toMatch(/inner steps must be at most/);
    expect(problemsOf({ ...good, codec: "int4" })[0]).toMatch(/^codec: /);
    expect(problemsOf({ ...good, codec: "topk", topkFraction: 0 })[0]).toMatch(/^topkFraction: /);
    expect(problemsOf({ ...good, codec: "int8", aggregation: "trimmed-mean" }).join()).toMatch(/codec other than dense needs aggregation "mean"/);
  });

  it("topology defaults to auto; torus and groups need a mean and a summing codec", () => {
    expect(parseJob(good).topology).toBe("auto");
    expect(parseJob({ ...good, topology: "torus", codec: "int8" }).topology).toBe("torus");
    expect(parseJob({ ...good, topology: "ring" }).topology).toBe("ring");
    expect(problemsOf({ ...good, topology: "mesh" })[0]).toMatch(/^topology: /);
    expect(parseJob({ ...good, topology: "groups", codec: "int8" }).topology).toBe("groups");
    expect(problemsOf({ ...good, topology: "torus", codec: "topk" }).join()).toMatch(/topologies "torus" and "groups" need aggregation "mean" and a codec other than topk/);
    expect(problemsOf({ ...good, topology: "torus", aggregation: "centered-clip" }).join()).toMatch(/"groups" need/);
    expect(problemsOf({ ...good, topology: "groups", codec: "topk" }).join()).toMatch(/"groups" need aggregation "mean"/);
    expect(problemsOf({ ...good, topology: "groups", aggregation: "trimmed-mean" }).join()).toMatch(/"groups" need/);
    // auto falls back to what a job can run: no problem with topk or robust aggregation.
    expect(problemsOf({ ...good, codec: "topk" })).toEqual([]);
  });

  /** The problems parseJob lists for `input`, or [] when it parses. */
  function problemsOf(input: unknown): string[] {
    try {
      parseJob(input);
      return [];
    } catch (error) {
      if (!(error instanceof JobError)) throw error;
      return error.problems;
    }
  }

  it("refuses a huge hidden layer at parse time, naming the field", () => {
    // Before the bound this reached TF.js and failed with "Invalid typed array length".
    const problems = problemsOf({ ...good, model: { kind: "mlp", hidden: [1e9] } });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^model\.hidden\.0: /);
    expect(problems[0]).toContain(`at most ${MAX_DENSE_UNITS}`);
  });

  const cnn = { kind: "cnn", filters: [8, 16], kernelSize: 3, dense: 64 };
  const bounds: [string, unknown, string | undefined][] = [
    ["widest hidden layer", { kind: "mlp", hidden: [MAX_DENSE_UNITS, MAX_DENSE_UNITS] }, undefined],
    ["hidden layer one too wide", { kind: "mlp", hidden: [8, MAX_DENSE_UNITS + 1] }, "model.hidden.1"],
    ["most filters", { ...cnn, filters: [MAX_CNN_FILTERS] }, undefined],
    ["too many filters", { ...cnn, filters: [8, MAX_CNN_FILTERS + 1] }, "model.filters.1"],
    ["largest kernel", { ...cnn, kernelSize: MAX_KERNEL_SIZE }, undefined],
    ["kernel too large", { ...cnn, kernelSize: MAX_KERNEL_SIZE + 1 }, "model.kernelSize"],
    ["widest dense layer", { ...cnn, dense: MAX_DENSE_UNITS }, undefined],
    ["dense layer too wide", { ...cnn, dense: MAX_DENSE_UNITS + 1 }, "model.dense"],
  ];
  it.each(bounds)("model bounds: %s", (_name, model, path) => {
    const problems = problemsOf({ ...good, model });
    if (path === undefined) expect(problems).toEqual([]);
    else expect(problems).toEqual([expect.stringMatching(new RegExp(`^${path.replace(/\./g, "\\.")}: at most `))]);
  });

  it("keeps the batch size at most 65,536 and still lists every problem", () => {
    expect(problemsOf({ ...good, batchSize: MAX_BATCH_SIZE })).toEqual([]);
    const problems = problemsOf({ ...good, batchSize: MAX_BATCH_SIZE + 1, model: { kind: "cnn", filters: [1e6], kernelSize: 99, dense: 1e9 } });
    expect(problems.map((p) => p.split(":")[0]).sort()).toEqual(["batchSize", "model.dense", "model.filters.0", "model.kernelSize"]);
  });
});
