import { describe, expect, it } from "vitest";
import type { CommittedRound, RoundReport } from "@crowdtrain/coordination";
import { lastPipeline } from "../src/training/pipeline-status.ts";

const plan = { kind: "pipeline" as const, stages: [{ from: 0, to: 3 }, { from: 3, to: 5 }], replicas: [["a", "b"], ["c", "d"]], microBatches: 4, schedule: "gpipe" as const };
const report = (computeMs: number, stageBusyMs?: number): RoundReport => ({
  hash: "0".repeat(64),
  samples: 8,
  loss: 1,
  timings: { computeMs, readbackMs: 0, allReduceMs: 5, updateMs: 1, ...(stageBusyMs === undefined ? {} : { stageBusyMs }) },
  bytesSent: 0,
  bytesReceived: 0,
});
const commit = (reports: Record<string, RoundReport>): CommittedRound => ({
  round: 7,
  attempt: 9,
  epoch: 0,
  hash: "1".repeat(64),
  plan: { kind: "ring", members: ["a", "b", "c", "d"] },
  samples: 16,
  loss: 1,
  roundMs: 120,
  reports: new Map(Object.entries(reports)),
  uploader: "a",
  pipeline: { plan, stageHashes: ["2".repeat(64), "3".repeat(64)] },
});

describe("the last pipeline round on the dashboard", () => {
  it("averages each stage's span and compute time over its replicas; the bubble is the mean idle share", () => {
    // Stage 0 (a, c): busy 60 and 80 of 100 ms; stage 1 (b, d): busy 50 of 100 and 30 of 60.
    const last = lastPipeline(commit({ a: report(100, 60), c: report(100, 80), b: report(100, 50), d: report(60, 30) }));
    expect(last?.stages).toEqual([
      { spanMs: 100, busyMs: 70 },
      { spanMs: 80, busyMs: 40 },
    ]);
    expect(last?.bubble).toBeCloseTo((0.3 + 0.5) / 2, 12);
    expect(last?.bubbleTheory).toBeCloseTo(1 / 5, 12);
    expect(last).toMatchObject({ round: 7, plan, stageHashes: ["2".repeat(64), "3".repeat(64)] });
  });

  it("shows no stage times or bubble when a stage's member did not report its compute time, and nothing for a data-parallel round", () => {
    const last = lastPipeline(commit({ a: report(100, 60), c: report(100), b: report(100, 50), d: report(60, 30) }));
    expect(last).not.toHaveProperty("stages");
    expect(last).not.toHaveProperty("bubble");
    expect(last?.bubbleTheory).toBeCloseTo(0.2, 12);
    const { pipeline: _none, ...dataParallel } = commit({});
    expect(lastPipeline(dataParallel)).toBeUndefined();
  });
});
