import { describe, expect, it } from "vitest";
import { bubbleTheory, measuredBubble, simulateRound, stageOps, type ScheduleKind } from "../src/schedule.ts";

const KINDS: ScheduleKind[] = ["gpipe", "1f1b"];
const label = (ops: { kind: string; micro: number }[]): string => ops.map((op) => `${op.kind[0]}${op.micro}`).join(" ");

describe("stageOps", () => {
  it("GPipe: every forward, then every backward, in micro-batch order; the last stage turns each micro-batch around as it arrives", () => {
    expect(label(stageOps("gpipe", 3, 1, 4))).toBe("f0 f1 f2 f3 b0 b1 b2 b3");
    expect(label(stageOps("gpipe", 3, 2, 4))).toBe("f0 b0 f1 b1 f2 b2 f3 b3");
  });

  it("1F1B: K−k−1 warm-up forwards, one forward one backward, then the remaining backwards", () => {
    expect(label(stageOps("1f1b", 4, 0, 6))).toBe("f0 f1 f2 f3 b0 f4 b1 f5 b2 b3 b4 b5");
    expect(label(stageOps("1f1b", 4, 2, 6))).toBe("f0 f1 b0 f2 b1 f3 b2 f4 b3 f5 b4 b5");
    expect(label(stageOps("1f1b", 4, 3, 3))).toBe("f0 b0 f1 b1 f2 b2");
    // Fewer micro-batches than warm-up slots: forwards, then backwards.
    expect(label(stageOps("1f1b", 4, 0, 2))).toBe("f0 f1 b0 b1");
  });

  it("runs each micro-batch's forward once and its backward once, after its forward, for every shape", () => {
    for (const kind of KINDS) {
      for (let stages = 1; stages <= 6; stages++) {
        for (let micros = 1; micros <= 9; micros++) {
          for (let stage = 0; stage < stages; stage++) {
            const ops = stageOps(kind, stages, stage, micros);
            expect(ops.length).toBe(2 * micros);
            for (let m = 0; m < micros; m++) {
              const f = ops.findIndex((op) => op.kind === "forward" && op.micro === m);
              const b = ops.findIndex((op) => op.kind === "backward" && op.micro === m);
              expect(f).toBeGreaterThanOrEqual(0);
              expect(b).toBeGreaterThan(f);
              expect(ops.filter((op) => op.micro === m).length).toBe(2);
            }
          }
        }
      }
    }
  });

  it("refuses shapes that are not a pipeline", () => {
    expect(() => stageOps("gpipe", 0, 0, 1)).toThrow(/stages/);
    expect(() => stageOps("gpipe", 2, 2, 1)).toThrow(/stage 2/);
    expect(() => stageOps("1f1b", 2, 0, 0)).toThrow(/micro-batches/);
  });
});

describe("simulateRound", () => {
  it("idles each stage (K−1)/(M+K−1) of the round with equal stages and free links, under both schedules", () => {
    for (const kind of KINDS) {
      for (const stages of [1, 2, 4]) {
        for (const micros of [1, 4, 8]) {
          const round = simulateRound(kind, micros, { forward: new Array(stages).fill(1), backward: new Array(stages).fill(2), transfer: 0 });
          expect(round.makespan, `${kind} K=${stages} M=${micros}`).toBeCloseTo((micros + stages - 1) * 3, 9);
          expect(round.bubble, `${kind} K=${stages} M=${micros}`).toBeCloseTo(bubbleTheory(stages, micros), 9);
        }
      }
    }
  });

  it("idles (K−1)/(M+K−1) too when the last stage computes its forward inside its backward, as StageCompute does", () => {
    // Backward-first GPipe (the last stage waiting for every forward) idled 0.373 here, not 0.273.
    for (const kind of KINDS) {
      const round = simulateRound(kind, 8, { forward: [1, 1, 1, 0], backward: [3, 3, 3, 4], transfer: 0 });
      expect(round.bubble, kind).toBeCloseTo(bubbleTheory(4, 8), 9);
    }
  });

  it("1F1B stashes at most K−k micro-batches where GPipe stashes all M (the last stage one)", () => {
    const costs = { forward: [1, 1, 1, 1], backward: [2, 2, 2, 2], transfer: 0.5 };
    expect(simulateRound("gpipe", 8, costs).peakStash).toEqual([8, 8, 8, 1]);
    expect(simulateRound("1f1b", 8, costs).peakStash).toEqual([4, 3, 2, 1]);
  });

  it("runs at the pace of its slowest stage, and link time widens the bubble", () => {
    const balanced = simulateRound("gpipe", 8, { forward: [1, 1], backward: [2, 2], transfer: 0 });
    const skewed = simulateRound("gpipe", 8, { forward: [0.5, 1.5], backward: [1, 3], transfer: 0 });
    expect(skewed.makespan).toBeGreaterThan(balanced.makespan);
    expect(skewed.bubble).toBeGreaterThan(balanced.bubble);
    const slowLink = simulateRound("gpipe", 8, { forward: [1, 1], backward: [2, 2], transfer: 1 });
    expect(slowLink.makespan).toBe(balanced.makespan + 2);
    expect(slowLink.bubble).toBeGreaterThan(balanced.bubble);
  });

  it("refuses mismatched costs", () => {
    expect(() => simulateRound("gpipe", 2, { forward: [1, 1], backward: [1], transfer: 0 })).toThrow(/2 forward costs but 1 backward/);
  });
});

describe("bubbles", () => {
  it("bubbleTheory is (K−1)/(M+K−1)", () => {
    expect(bubbleTheory(1, 8)).toBe(0);
    expect(bubbleTheory(4, 1)).toBe(0.75);
    expect(bubbleTheory(4, 8)).toBeCloseTo(3 / 11, 12);
  });

  it("measuredBubble counts a stage's overlapping intervals once and only inside the span", () => {
    const busy = [
      [{ start: 0, end: 4 }, { start: 2, end: 6 }],
      [{ start: -5, end: 1 }, { start: 9, end: 20 }],
    ];
    // Stage 0 busy 6 of 10, stage 1 busy 1 + 1 of 10: idle 0.4 and 0.8.
    expect(measuredBubble(busy, { start: 0, end: 10 })).toBeCloseTo(0.6, 12);
    expect(() => measuredBubble(busy, { start: 3, end: 3 })).toThrow(/positive length/);
  });
});
