import { describe, expect, it } from "vitest";
import { niceTicks } from "../src/logic/chart.ts";
import { estimateEta, msPerRound, remainingRounds, type EtaInput } from "../src/logic/eta.ts";
import { formatAuditCounts, formatBytes, formatDuration, formatPercent, formatRate, formatRelativeError, peerLabel, splitPeerRefs, truncate } from "../src/logic/format.ts";
import { phaseShares, splitRound, timelineScale, type RoundSplit } from "../src/logic/timeline.ts";

const input = (over: Partial<EtaInput> = {}): EtaInput => ({
  status: "running",
  round: 10,
  targetRounds: undefined,
  epoch: 0,
  epochProgress: { used: 960, total: 8_000 },
  job: { epochs: 2, batchSize: 96 },
  recentRounds: [],
  ...over,
});
const commits = (...at: number[]) => at.map((t) => ({ at: t, roundMs: 500 }));

describe("remaining rounds", () => {
  it("counts what is left of this epoch and the whole later ones (the last round of an epoch is partial)", () => {
    // 8000 / 96 = 83.3: 84 rounds an epoch; 7040 left in this one = 73.3 -> 74.
    expect(remainingRounds(input())).toBe(74 + 84);
    expect(remainingRounds(input({ epoch: 1 }))).toBe(74);
    expect(remainingRounds(input({ epoch: 1, epochProgress: { used: 8_000, total: 8_000 } }))).toBe(0);
  });

  it("takes the nearer of the round target and the epoch limit", () => {
    expect(remainingRounds(input({ targetRounds: 15 }))).toBe(5);
    expect(remainingRounds(input({ targetRounds: 500 }))).toBe(158);
    expect(remainingRounds(input({ targetRounds: 15, job: { epochs: undefined, batchSize: 96 } }))).toBe(5);
    expect(remainingRounds(input({ targetRounds: 8, round: 10 }))).toBe(0);
  });

  it("is unbounded without either limit, and zero once done", () => {
    expect(remainingRounds(input({ job: { epochs: undefined, batchSize: 96 } }))).toBeUndefined();
    expect(remainingRounds(input({ status: "done" }))).toBe(0);
  });
});

describe("pace and ETA", () => {
  it("takes the spacing of the last commits, else a lone round's own time", () => {
    expect(msPerRound([])).toBeUndefined();
    expect(msPerRound(commits(1_000))).toBe(500);
    expect(msPerRound(commits(1_000, 2_000, 4_000))).toBe(1_500);
    // Only the last PACE_WINDOW (10) commits count: an early slow start does not linger.
    expect(msPerRound(commits(0, 100_000, ...Array.from({ length: 10 }, (_, i) => 200_000 + i * 1_000)))).toBe(1_000);
  });

  it("multiplies the rounds left by the pace", () => {
    expect(estimateEta(input({ targetRounds: 15, recentRounds: commits(0, 2_000, 4_000) }))).toEqual({ kind: "eta", rounds: 5, ms: 10_000 });
  });

  it("says paused, done, or why it cannot tell", () => {
    expect(estimateEta(input({ status: "paused", targetRounds: 15 }))).toEqual({ kind: "paused", rounds: 5 });
    expect(estimateEta(input({ status: "done" }))).toEqual({ kind: "done" });
    expect(estimateEta(input({ targetRounds: 10 }))).toEqual({ kind: "done" });
    expect(estimateEta(input())).toMatchObject({ kind: "unknown", why: "no round committed yet" });
    expect(estimateEta(input({ job: { epochs: undefined, batchSize: 96 }, recentRounds: commits(0, 1) }))).toMatchObject({ kind: "unknown", why: "no round or epoch limit" });
  });
});

describe("formatting", () => {
  it("writes sizes, rates and durations briefly", () => {
    expect([0, 999, 1_000, 1_500, 12_345_678, 2e9].map(formatBytes)).toEqual(["0 B", "999 B", "1.00 kB", "1.50 kB", "12.3 MB", "2.00 GB"]);
    expect(formatRate(7_000_000)).toBe("7.00 MB/s");
    expect(formatRate(undefined)).toBe("–");
    expect([850, 1_234, 12_345, 245_000, 7_800_000].map(formatDuration)).toEqual(["850 ms", "1.2 s", "12 s", "4 min 05 s", "2 h 10 min"]);
    expect(formatPercent(0.4567)).toBe("45.7%");
  });

  it("calls a peer by its name as given, else by its short id", () => {
    expect(peerLabel({ id: "0123456789abcdef", name: "<b>bold</b>" })).toBe("<b>bold</b>");
    expect(peerLabel({ id: "0123456789abcdef", name: "  " })).toBe("01234567…");
    expect(peerLabel({ id: "abc", name: undefined })).toBe("abc");
    expect(truncate("abcdefghij", 5)).toBe("abcd…");
    expect(truncate("😀😀😀", 3)).toBe("😀😀😀");
  });

  it("writes relative errors in scientific notation, and a peer's spot checks as counts (a dash when none)", () => {
    expect([1.234e-7, 0.031, 1e-4, 0, undefined, Number.NaN].map((e) => formatRelativeError(e))).toEqual(["1.2e-7", "3.1e-2", "1.0e-4", "0", "–", "–"]);
    expect(formatAuditCounts({ passed: 3, failed: 1 })).toBe("3 ✓ · 1 ✗");
    expect(formatAuditCounts({ passed: 0, failed: 2 })).toBe("0 ✓ · 2 ✗");
    expect(formatAuditCounts({ passed: 0, failed: 0 })).toBe("–");
    expect(formatAuditCounts(undefined)).toBe("–");
  });
});

describe("peer ids in event texts", () => {
  it("are cut out, longest first, with everything else kept as text", () => {
    expect(splitPeerRefs("round 3 aborted: a.b left", ["a.b", "zz"])).toEqual([{ text: "round 3 aborted: " }, { peerId: "a.b" }, { text: " left" }]);
    expect(splitPeerRefs("ab joined", ["a", "ab"])).toEqual([{ peerId: "ab" }, { text: " joined" }]);
    expect(splitPeerRefs("x-1 and x-1", ["x-1"])).toEqual([{ peerId: "x-1" }, { text: " and " }, { peerId: "x-1" }]);
    expect(splitPeerRefs("nothing here", ["a(b"])).toEqual([{ text: "nothing here" }]);
    expect(splitPeerRefs("weird a(b]* id", ["a(b]*"])).toEqual([{ text: "weird " }, { peerId: "a(b]*" }, { text: " id" }]);
  });
});

describe("charts and timeline", () => {
  it("chooses round ticks that cover the data", () => {
    expect(niceTicks(0, 1, 4)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(niceTicks(0.31, 2.29, 4)).toEqual([0, 0.5, 1, 1.5, 2, 2.5]);
    expect(niceTicks(5, 5, 4).length).toBeGreaterThan(1);
    expect(niceTicks(Number.NaN, 1)).toEqual([]);
  });

  it("splits a round into compute (with read-back), all-reduce, update and the rest", () => {
    const split = splitRound({ round: 3, roundMs: 1_000, computeMs: 500, readbackMs: 20, allReduceMs: 300, updateMs: 30 });
    expect(split).toEqual({ round: 3, totalMs: 1_000, phases: { compute: 520, allReduce: 300, update: 30, other: 150 } });
    // Slowest members' phases may add up to more than the wall time: the bar is their sum, no negative rest.
    expect(splitRound({ round: 4, roundMs: 100, computeMs: 80, readbackMs: 0, allReduceMs: 50, updateMs: 10 }).phases.other).toBe(0);
    const shares = phaseShares([split]);
    expect(shares.compute + shares.allReduce + shares.update + shares.other).toBeCloseTo(1, 10);
  });

  it("scales the timeline to the longest round, unless an outlier would flatten the others", () => {
    const rounds = (...totals: number[]): RoundSplit[] => totals.map((totalMs, round) => ({ round, totalMs, phases: { compute: totalMs, allReduce: 0, update: 0, other: 0 } }));
    expect(timelineScale([])).toEqual({ maxMs: 0, cut: false });
    expect(timelineScale(rounds(8_000))).toEqual({ maxMs: 8_000, cut: false });
    expect(timelineScale(rounds(900, 1_000, 1_200))).toEqual({ maxMs: 1_200, cut: false });
    // The first round compiled shaders: 8 s against ~0.7 s.
    expect(timelineScale(rounds(8_000, 700, 650, 720, 690))).toEqual({ maxMs: 2_100, cut: true });
  });
});
