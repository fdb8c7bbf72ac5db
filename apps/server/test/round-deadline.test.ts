import { DEFAULT_DIRECT_OPTIONS, DEFAULT_OPTIONS } from "@crowdtrain/allreduce";
import { describe, expect, it } from "vitest";
import { checkRoundDeadline, DEFAULT_ROUND_DEADLINE_MS, type ReducerTimeouts } from "../src/training/round-deadline.ts";

const REDUCERS: ReducerTimeouts = {
  ring: { ringStartTimeoutMs: 30_000, roundTimeoutMs: 120_000 },
  direct: { startTimeoutMs: 30_000, resultTimeoutMs: 40_000, roundTimeoutMs: 120_000 },
};

describe("the round deadline against the workers' all-reduce timeouts", () => {
  it("the defaults fit every aggregation the workers run", () => {
    for (const aggregation of ["mean", "centered-clip", "trimmed-mean"] as const) {
      expect(() => checkRoundDeadline(DEFAULT_ROUND_DEADLINE_MS, aggregation)).not.toThrow();
    }
  });

  it("checks the all-reducers' actual defaults, which the worker runs", () => {
    expect(DEFAULT_ROUND_DEADLINE_MS).toBeGreaterThan(DEFAULT_OPTIONS.ringStartTimeoutMs);
    expect(DEFAULT_ROUND_DEADLINE_MS).toBeGreaterThan(DEFAULT_DIRECT_OPTIONS.startTimeoutMs + DEFAULT_DIRECT_OPTIONS.resultTimeoutMs);
    expect(DEFAULT_ROUND_DEADLINE_MS).toBeLessThan(Math.min(DEFAULT_OPTIONS.roundTimeoutMs, DEFAULT_DIRECT_OPTIONS.roundTimeoutMs));
  });

  it("a ring's deadline must come after ringStartTimeoutMs, naming both values", () => {
    expect(() => checkRoundDeadline(30_000, "mean", REDUCERS)).toThrow(RangeError);
    expect(() => checkRoundDeadline(20_000, "mean", REDUCERS)).toThrow(/roundDeadlineMs \(20000\) must exceed the ring all-reducer's ringStartTimeoutMs \(30000\)/);
    expect(() => checkRoundDeadline(30_001, "mean", REDUCERS)).not.toThrow();
  });

  it("a direct plan's deadline must come after startTimeoutMs + resultTimeoutMs (the old 60 s default did not)", () => {
    expect(() => checkRoundDeadline(60_000, "trimmed-mean", REDUCERS)).toThrow(
      /roundDeadlineMs \(60000\) must exceed the direct all-reducer's startTimeoutMs \+ resultTimeoutMs \(70000\)/,
    );
    expect(() => checkRoundDeadline(60_000, "mean", REDUCERS)).not.toThrow();
    expect(() => checkRoundDeadline(70_001, "centered-clip", REDUCERS)).not.toThrow();
  });

  it("the deadline must come before the hard bound, naming both values", () => {
    expect(() => checkRoundDeadline(120_000, "mean", REDUCERS)).toThrow(/roundDeadlineMs \(120000\) must be below the ring all-reducer's roundTimeoutMs \(120000\)/);
    const shortBound: ReducerTimeouts = { ...REDUCERS, direct: { ...REDUCERS.direct, roundTimeoutMs: 80_000 } };
    expect(() => checkRoundDeadline(90_000, "centered-clip", shortBound)).toThrow(/must be below the direct all-reducer's roundTimeoutMs \(80000\)/);
  });

  it("a value that is not a number fails rather than passes", () => {
    expect(() => checkRoundDeadline(Number.NaN, "mean", REDUCERS)).toThrow(RangeError);
  });
});
