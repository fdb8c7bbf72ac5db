import { describe, expect, it } from "vitest";
import { JobError, parseJob } from "../src/index.ts";

const good = {
  name: "mnist-mlp",
  dataset: "mnist",
  model: { kind: "mlp", hidden: [128] },
  optimizer: { kind: "adam", learningRate: 0.001 },
  batchSize: 96,
  epochs: 2,
};

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
  });
});
