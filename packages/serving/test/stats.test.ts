import { describe, expect, it } from "vitest";
import { percentile, ServingStats } from "../src/stats.ts";

/** 1, 2, ..., n. */
const upTo = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);

describe("percentile (nearest rank)", () => {
  it("is undefined for an empty list", () => {
    expect(percentile([], 50)).toBeUndefined();
    expect(percentile([], 0)).toBeUndefined();
  });

  it("gives the one value of a one-element list for any p", () => {
    for (const p of [0, 1, 50, 99, 100]) expect(percentile([7], p)).toBe(7);
  });

  it("gives the ceil(p/100 × n)-th value", () => {
    const hundred = upTo(100);
    expect(percentile(hundred, 50)).toBe(50);
    expect(percentile(hundred, 95)).toBe(95);
    expect(percentile(hundred, 99)).toBe(99);
    expect(percentile(hundred, 100)).toBe(100);
    expect(percentile(hundred, 1)).toBe(1);
    const ten = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
    expect(percentile(ten, 50)).toBe(50);
    expect(percentile(ten, 51)).toBe(60);
    expect(percentile(ten, 95)).toBe(100);
    expect(percentile(ten, 99)).toBe(100);
    expect(percentile(ten, 90)).toBe(90);
    expect(percentile([1, 2, 3, 4], 50)).toBe(2);
    expect(percentile([1, 2, 3, 4], 75)).toBe(3);
    expect(percentile([1, 2, 3], 50)).toBe(2);
  });

  it("clamps p outside 0..100 to the first and last value", () => {
    expect(percentile([3, 5, 8], 0)).toBe(3);
    expect(percentile([3, 5, 8], -20)).toBe(3);
    expect(percentile([3, 5, 8], 250)).toBe(8);
  });

  it("has the exact p50/p95/p99 rank for every list length up to 2000", () => {
    const wrong: string[] = [];
    for (let n = 1; n <= 2_000; n++) {
      const list = upTo(n);
      for (const p of [50, 95, 99]) if (percentile(list, p) !== Math.max(1, Math.ceil((p * n) / 100))) wrong.push(`p${p} of ${n}`);
    }
    expect(wrong).toEqual([]);
  });

  it("has the exact nearest rank for any whole p", () => {
    // (p / 100) * n is 55.00000000000001 for p = 55, n = 100: the rank must be computed as (p * n) / 100.
    expect(percentile(upTo(100), 55)).toBe(55);
    expect(percentile(upTo(100), 7)).toBe(7);
  });
});

describe("ServingStats", () => {
  it("refuses a bad window or keep", () => {
    for (const [windowMs, keep] of [
      [0, 5],
      [-1000, 5],
      [Number.NaN, 5],
      [1000, 0],
      [1000, 1.5],
      [1000, Number.NaN],
    ] as const) {
      expect(() => new ServingStats(windowMs, keep), `${windowMs}, ${keep}`).toThrow(RangeError);
    }
  });

  it("closes no window before the first event", () => {
    const stats = new ServingStats(1_000, 10);
    stats.roll(50_000, 1, 0);
    expect(stats.windows).toEqual([]);
  });

  it("closes a window windowMs after the first event, with rates, errors and latency percentiles", () => {
    const stats = new ServingStats(2_000, 10);
    stats.arrived(1_000);
    for (let i = 0; i < 20; i++) stats.arrived(1_000 + i);
    // Latencies 1..20 ms, answered out of order.
    for (const latency of [20, 3, 17, 1, 5, 19, 2, 4, 18, 6, 16, 7, 15, 8, 14, 9, 13, 10, 12, 11]) stats.answered(1_500, latency);
    stats.errored(1_600);
    stats.errored(1_700);
    stats.roll(2_999, 3, 4);
    expect(stats.windows).toEqual([]);
    stats.roll(3_000, 3, 4);
    expect(stats.windows).toHaveLength(1);
    expect(stats.windows[0]).toEqual({
      at: 3_000,
      offeredRps: 21 / 2,
      servedRps: 20 / 2,
      poolSize: 3,
      queueDepth: 4,
      errors: 2,
      p50Ms: 10,
      p95Ms: 19,
      p99Ms: 20,
    });
    expect(stats.served).toBe(20);
    expect(stats.errors).toBe(2);
  });

  it("leaves the percentiles out of a window with no answers", () => {
    const stats = new ServingStats(1_000, 10);
    stats.arrived(0);
    stats.errored(10);
    stats.roll(1_000, 1, 1);
    const window = stats.windows[0];
    expect(window).toMatchObject({ at: 1_000, offeredRps: 1, servedRps: 0, errors: 1 });
    expect(window).not.toHaveProperty("p50Ms");
    expect(window).not.toHaveProperty("p95Ms");
    expect(window).not.toHaveProperty("p99Ms");
  });

  it("starts each window empty, and closes empty windows across a gap", () => {
    const stats = new ServingStats(1_000, 10);
    stats.answered(0, 5);
    stats.errored(10);
    stats.roll(1_000, 1, 0);
    expect(stats.windows[0]).toMatchObject({ errors: 1, servedRps: 1 });
    stats.roll(4_500, 2, 7);
    expect(stats.windows.map((w) => w.at)).toEqual([1_000, 2_000, 3_000, 4_000]);
    for (const window of stats.windows.slice(1)) {
      expect(window).toMatchObject({ offeredRps: 0, servedRps: 0, errors: 0, poolSize: 2, queueDepth: 7 });
      expect(window).not.toHaveProperty("p50Ms");
    }
    // The open window (4000..5000) collects what comes next.
    stats.answered(4_600, 30);
    stats.roll(5_000, 2, 0);
    expect(stats.windows.at(-1)).toMatchObject({ at: 5_000, servedRps: 1, p50Ms: 30, p99Ms: 30 });
    // Totals count every answer, across windows.
    expect(stats.served).toBe(2);
  });

  it("keeps only the last `keep` windows, oldest first", () => {
    const stats = new ServingStats(100, 3);
    stats.arrived(0);
    stats.roll(1_000, 1, 0);
    expect(stats.windows.map((w) => w.at)).toEqual([800, 900, 1_000]);
    stats.roll(1_100, 1, 0);
    expect(stats.windows.map((w) => w.at)).toEqual([900, 1_000, 1_100]);
  });

  it("counts an event in the window its time falls in, even before that window is rolled", () => {
    // An arrival at 1500 (window 1000..2000) recorded before the next roll belongs to that window,
    // not to the one that ended at 1000.
    const stats = new ServingStats(1_000, 10);
    stats.arrived(0);
    stats.arrived(1_500);
    stats.answered(1_600, 40);
    stats.roll(2_000, 1, 0);
    expect(stats.windows.map((w) => w.offeredRps)).toEqual([1, 1]);
    expect(stats.windows.map((w) => w.servedRps)).toEqual([0, 1]);
  });
});
