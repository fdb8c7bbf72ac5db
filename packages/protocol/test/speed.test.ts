import { describe, expect, it } from "vitest";
import { computeTimeMs, leaseSpeed } from "../src/index.ts";

describe("one definition of speed", () => {
  it("counts the read-back as compute (on a GPU it finishes the queued work)", () => {
    // A WebGPU round as the bench sees it: 3 ms to dispatch, 40 ms waiting for the result.
    expect(computeTimeMs({ computeMs: 3, readbackMs: 40 })).toBe(43);
    expect(leaseSpeed(86, computeTimeMs({ computeMs: 3, readbackMs: 40 }))).toBeCloseTo(2000, 9);
  });

  it("treats an instant lease as 1 ms, never as infinitely fast", () => {
    expect(leaseSpeed(5, 0)).toBe(5000);
    expect(Number.isFinite(leaseSpeed(5, -3))).toBe(true);
  });
});
