import { parseJob, parseSummary } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { describeContribution, describeJob, describeProgress, insecureNotice, sparklinePoints } from "../src/page/job-facts.ts";

const JOB = parseJob({ name: "j", dataset: "mnist", model: { kind: "mlp", hidden: [32] }, optimizer: { kind: "sgd", learningRate: 0.1 }, batchSize: 32, rounds: 60, epochs: 2 });
const summary = (patch: Record<string, unknown>) =>
  parseSummary({ job: JOB, status: "running", round: 12, targetRounds: 60, epoch: 0, epochProgress: { used: 100, total: 1000 }, samplesSeen: 384, members: 3, loss: [], accuracy: [], ...patch });

describe("the volunteer page's job facts", () => {
  it("a sparkline spans the box, highest value at the top, skipping NaN", () => {
    expect(sparklinePoints([2, 1, Number.NaN, 0], 30, 10)).toBe("0.0,0.0 10.0,5.0 30.0,10.0");
    expect(sparklinePoints([1], 30, 10)).toBe("");
    expect(sparklinePoints([1, 1], 30, 10)).toBe("0.0,10.0 30.0,10.0");
  });

  it("progress follows whichever limit ends the job first, and is full when done", () => {
    expect(describeProgress(summary({}))).toEqual({ fraction: 0.2, text: "running: round 12 of 60, epoch 1 of 2 (20%)" });
    // Epoch 1 (counted from 0) three-quarters used: 87.5% of two epochs, ahead of the rounds.
    expect(describeProgress(summary({ epoch: 1, epochProgress: { used: 750, total: 1000 } })).fraction).toBe(0.875);
    expect(describeProgress(summary({ status: "done" })).fraction).toBe(1);
    const openEnded = parseSummary({ ...summary({}), job: { ...JOB, epochs: undefined }, targetRounds: undefined });
    expect(describeProgress(openEnded)).toEqual({ fraction: undefined, text: "running: round 12" });
  });

  it("describes the job and this tab's share of all samples", () => {
    expect(describeJob(parseJob({ ...JOB, algorithm: { kind: "diloco", innerSteps: 8 }, codec: "int8" }))).toBe("MLP (32 hidden) on mnist, DiLoCo (8 inner steps), int8 all-reduce");
    expect(describeContribution({ roundsDone: 4, samplesCommitted: 96 }, 384)).toBe("4 rounds, 96 samples (25.0% of all 384 samples so far)");
    expect(describeContribution({ roundsDone: 0, samplesCommitted: 0 }, undefined)).toBe("0 rounds, 0 samples");
  });

  it("explains a page without WebGPU for want of https, with the https address", () => {
    expect(insecureNotice({ isSecureContext: true, href: "https://10.0.0.2:8080/" })).toBeUndefined();
    expect(insecureNotice({ isSecureContext: false, href: "http://10.0.0.2:8080/?join=abc" })?.httpsUrl).toBe("https://10.0.0.2:8080/?join=abc");
  });
});
