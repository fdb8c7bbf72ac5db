import { describe, expect, it } from "vitest";
import { chunkOffsets, partition, receiveSegment, sendSegment, stepsPerPhase, type Phase } from "../src/index.ts";

describe("partition", () => {
  const cases: [length: number, n: number, sizes: number[]][] = [
    [0, 1, [0]],
    [0, 3, [0, 0, 0]],
    [1, 3, [1, 0, 0]],
    [2, 3, [1, 1, 0]],
    [7, 3, [3, 2, 2]],
    [9, 3, [3, 3, 3]],
    [10, 4, [3, 3, 2, 2]],
  ];
  for (const [length, n, sizes] of cases) {
    it(`${length} elements over ${n} peers -> ${sizes.join(",")}`, () => {
      const spans = partition(length, n);
      expect(spans.map((s) => s.length)).toEqual(sizes);
      let next = 0;
      for (const span of spans) {
        expect(span.start).toBe(next);
        next += span.length;
      }
      expect(next).toBe(length);
    });
  }
  it("rejects nonsense", () => {
    expect(() => partition(-1, 2)).toThrow(RangeError);
    expect(() => partition(3, 0)).toThrow(RangeError);
    expect(() => partition(2.5, 2)).toThrow(RangeError);
  });
  it("cuts a segment into bounded chunks", () => {
    expect(chunkOffsets(0, 4)).toEqual([]);
    expect(chunkOffsets(9, 4)).toEqual([0, 4, 8]);
    expect(chunkOffsets(8, 4)).toEqual([0, 4]);
    expect(() => chunkOffsets(8, 0)).toThrow(RangeError);
  });
});

describe("ring schedule", () => {
  for (let n = 2; n <= 8; n++) {
    it(`N=${n}: what a peer receives is what its left neighbour sends, and each chunk is forwarded at the next step`, () => {
      for (const phase of ["reduce-scatter", "all-gather"] as Phase[]) {
        for (let p = 0; p < n; p++) {
          const left = (p - 1 + n) % n;
          for (let s = 0; s < stepsPerPhase(n); s++) {
            expect(receiveSegment(phase, s, p, n)).toBe(sendSegment(phase, s, left, n));
            if (s + 1 < stepsPerPhase(n)) expect(sendSegment(phase, s + 1, p, n)).toBe(receiveSegment(phase, s, p, n));
          }
        }
      }
    });
    it(`N=${n}: reduce-scatter ends with peer i owning segment i, summed over all N peers; all-gather brings every other segment`, () => {
      for (let p = 0; p < n; p++) {
        const last = stepsPerPhase(n) - 1;
        expect(receiveSegment("reduce-scatter", last, p, n)).toBe(p);
        expect(sendSegment("all-gather", 0, p, n)).toBe(p);
        const gathered = new Set<number>();
        for (let s = 0; s < stepsPerPhase(n); s++) gathered.add(receiveSegment("all-gather", s, p, n));
        expect([...gathered].sort()).toEqual([...Array(n).keys()].filter((k) => k !== p));
      }
      // Segment j visits every peer exactly once on its way to its owner.
      for (let j = 0; j < n; j++) {
        const contributors = new Set<number>();
        for (let p = 0; p < n; p++) for (let s = 0; s < stepsPerPhase(n); s++) if (sendSegment("reduce-scatter", s, p, n) === j) contributors.add(p);
        expect(contributors.size).toBe(n - 1);
        expect(contributors.has(j)).toBe(false);
      }
    });
  }
});
