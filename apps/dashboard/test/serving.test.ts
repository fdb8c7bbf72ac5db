import { describe, expect, it } from "vitest";
import { clockTicks } from "../src/logic/chart.ts";
import { formatRps } from "../src/logic/format.ts";
import { lastAnsweredWindow, latestDecisions, servingSeries } from "../src/logic/serving.ts";
import { fakeServing } from "./fake-status.ts";

const NOW = 1_800_000_000_000;

describe("serving windows as chart series", () => {
  it("puts each window at its end, in seconds of server clock, oldest first", () => {
    const { windows } = fakeServing(NOW, 4);
    const series = servingSeries(windows);
    const xs = [NOW / 1_000 - 15, NOW / 1_000 - 10, NOW / 1_000 - 5, NOW / 1_000];
    expect(series.poolSize).toEqual(xs.map((x) => [x, 1]));
    expect(series.offeredRps.map(([, y]) => y)).toEqual([0, 2, 4, 6]);
    expect(series.servedRps.map(([, y]) => y)).toEqual([0, 1.8, 0, 5.4]);
    expect(series.queueDepth.map(([, y]) => y)).toEqual([0, 1, 2, 3]);
    expect(series.errors.map(([, y]) => y)).toEqual([0, 0, 0, 3]);
  });

  it("breaks the latency lines at a window that answered nothing, instead of drawing a zero", () => {
    const series = servingSeries(fakeServing(NOW, 4).windows);
    expect(series.p50Ms.map(([, y]) => y)).toEqual([20, 21, Number.NaN, 23]);
    expect(series.p95Ms[2]?.[1]).toBeNaN();
    expect(series.p99Ms.map(([, y]) => y)).toEqual([80, 83, Number.NaN, 89]);
  });

  it("gives empty series for no windows", () => {
    expect(Object.values(servingSeries([]))).toEqual(Array.from({ length: 8 }, () => []));
  });

  it("quotes the latency of the latest window that answered requests", () => {
    const { windows } = fakeServing(NOW, 3);
    expect(lastAnsweredWindow(windows)?.at).toBe(NOW - 5_000);
    expect(lastAnsweredWindow([])).toBeUndefined();
  });

  it("lists the latest decisions newest first, without reordering the server's list", () => {
    const { decisions } = fakeServing(NOW);
    expect(latestDecisions(decisions, 10).map((d) => d.to)).toEqual([3, 2]);
    expect(latestDecisions(decisions, 1).map((d) => d.to)).toEqual([3]);
    expect(decisions.map((d) => d.to)).toEqual([2, 3]);
  });

  it("writes requests per second with a tenth only where it matters", () => {
    expect([0, 0.44, 12.5, 41.25, 1_234.5, undefined, Number.NaN].map((r) => formatRps(r))).toEqual(["0", "0.4", "12.5", "41.3", "1,235", "–", "–"]);
  });
});

describe("clock ticks", () => {
  it("fall on whole minutes and their usual fractions, not every 100 s", () => {
    // Three minutes of windows (36 x 5 s) on a chart with room for three labels: a tick a minute.
    expect(clockTicks(1_000_005, 1_000_180, 3)).toEqual([1_000_020, 1_000_080, 1_000_140]);
    expect(clockTicks(0, 60, 4)).toEqual([0, 15, 30, 45, 60]);
    expect(clockTicks(0, 1, 4)).toEqual([0, 1]);
    expect(clockTicks(Number.NaN, 10)).toEqual([]);
  });
});
