import { describe, expect, it } from "vitest";
import {
  decodeTopkChunk,
  encodeTopkChunk,
  ErrorFeedback,
  MAX_SAMPLES,
  selectTopk,
  sumBlocks,
  topkChunkCount,
  topkChunkPairs,
  topkCount,
  topkPairsPerChunk,
  type SparseBlock,
} from "../src/index.ts";
import { seededRandom } from "./memory-network.ts";

/** The definition, by a full sort: largest magnitude first, lower index first among equals. */
function referenceTopk(values: Float32Array, k: number): number[] {
  const order = Array.from(values.keys()).sort((a, b) => Math.abs(values[b]!) - Math.abs(values[a]!) || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

describe("top-k selection", () => {
  it("k = max(1, ceil(fraction·L)), at most L, 0 for an empty vector; fractions outside (0, 1] are refused", () => {
    expect([topkCount(0, 0.5), topkCount(10, 0.002), topkCount(1000, 0.5), topkCount(7, 1), topkCount(4099, 0.01)]).toEqual([0, 1, 500, 7, 41]);
    for (const bad of [0, -0.1, 1.5, Number.NaN]) expect(() => topkCount(10, bad)).toThrow(/topkFraction/);
  });

  it("matches the sort-based definition, ties broken by the lower index, on random vectors full of ties", () => {
    const random = seededRandom(5);
    for (let trial = 0; trial < 300; trial++) {
      const length = 1 + Math.floor(random() * 200);
      const palette = [0, -0, 1, -1, 2.5, -2.5, 1e-40, 7];
      const values = Float32Array.from({ length }, () => (trial % 2 === 0 ? palette[Math.floor(random() * palette.length)]! : Math.fround(random() - 0.5)));
      for (const k of [0, 1, Math.floor(length / 3), length]) expect(Array.from(selectTopk(values, k)), `trial ${trial} k ${k}`).toEqual(referenceTopk(values, k));
    }
  });

  it("all-equal and all-zero vectors take the lowest indices", () => {
    expect(Array.from(selectTopk(new Float32Array(10).fill(3), 4))).toEqual([0, 1, 2, 3]);
    expect(Array.from(selectTopk(new Float32Array(10), 2))).toEqual([0, 1]);
  });
});

describe("top-k blocks on the wire", () => {
  const block: SparseBlock = { samples: 42, indices: Uint32Array.from([1, 5, 6, 90, 91]), values: Float32Array.from([0.5, -3e38, 1e-45, -0, 7]) };

  it("round-trips a block cut into chunks: the count in the first, pairs in order", () => {
    const perChunk = topkPairsPerChunk(28); // (28 - 4) / 8 = 3 pairs
    expect(perChunk).toBe(3);
    expect(topkChunkCount(5, perChunk)).toBe(2);
    const first = encodeTopkChunk(block, 0, perChunk);
    const second = encodeTopkChunk(block, 1, perChunk);
    expect([first.byteLength, second.byteLength]).toEqual([4 + 3 * 8, 2 * 8]);
    const a = decodeTopkChunk(first, 0, topkChunkPairs(5, perChunk, 0), 100, MAX_SAMPLES);
    const b = decodeTopkChunk(second, 1, topkChunkPairs(5, perChunk, 1), 100, MAX_SAMPLES);
    if ("problem" in a || "problem" in b) throw new Error("refused");
    expect(a.samples).toBe(42);
    expect(b.samples).toBeUndefined();
    expect([...a.indices, ...b.indices]).toEqual(Array.from(block.indices));
    expect(Object.is([...a.values, ...b.values][4 - 1], -0)).toBe(true);
    expect([...a.values, ...b.values]).toEqual(Array.from(block.values));
  });

  it("an empty block (L = 0) is one chunk with the count alone", () => {
    const empty: SparseBlock = { samples: 3, indices: new Uint32Array(0), values: new Float32Array(0) };
    expect(topkChunkCount(0, 5)).toBe(1);
    const decoded = decodeTopkChunk(encodeTopkChunk(empty, 0, 5), 0, 0, 0, MAX_SAMPLES);
    expect(decoded).toEqual({ samples: 3, indices: new Uint32Array(0), values: new Float32Array(0) });
  });

  const refusals: [string, (view: DataView) => void, RegExp][] = [
    ["an index out of range", (v) => v.setUint32(4 + 8, 100, true), /index 100 of pair 1 is out of range for 100 elements/],
    ["an index not increasing", (v) => v.setUint32(4 + 16, 5, true), /index 5 of pair 2 does not increase \(previous 5\)/],
    ["a repeated index", (v) => v.setUint32(4, 5, true), /index 5 of pair 1 does not increase/],
    ["a NaN value", (v) => v.setFloat32(4 + 4, Number.NaN, true), /non-finite value NaN at index 1/],
    ["an infinite value", (v) => v.setFloat32(4 + 12, -Infinity, true), /non-finite value -Infinity/],
    ["a count above MAX_SAMPLES", (v) => v.setUint32(0, MAX_SAMPLES + 1, true), /sample count 16777217 exceeds/],
  ];
  for (const [name, corrupt, pattern] of refusals) {
    it(`refuses ${name}`, () => {
      const bytes = encodeTopkChunk(block, 0, 3);
      corrupt(new DataView(bytes.buffer));
      const decoded = decodeTopkChunk(bytes, 0, 3, 100, MAX_SAMPLES);
      expect("problem" in decoded && decoded.problem).toMatch(pattern);
    });
  }

  it("refuses a truncated chunk", () => {
    const bytes = encodeTopkChunk(block, 0, 3);
    const decoded = decodeTopkChunk(bytes.subarray(0, bytes.length - 3), 0, 3, 100, MAX_SAMPLES);
    expect("problem" in decoded && decoded.problem).toMatch(/has 25 payload bytes, expected 28 \(3 pairs and the count, topk\)/);
  });

  it("sums blocks into a dense vector in the order given", () => {
    const a: SparseBlock = { samples: 1, indices: Uint32Array.from([0, 2]), values: Float32Array.from([1e8, 1]) };
    const b: SparseBlock = { samples: 1, indices: Uint32Array.from([0]), values: Float32Array.from([1]) };
    const c: SparseBlock = { samples: 1, indices: Uint32Array.from([0, 1]), values: Float32Array.from([-1e8, 4]) };
    expect(Array.from(sumBlocks([a, b, c], 3))).toEqual([0, 4, 1]); // 1e8 + 1 rounds to 1e8 in float32
    expect(Array.from(sumBlocks([b, a, c], 3))).toEqual([0, 4, 1]);
    expect(Array.from(sumBlocks([a, c, b], 3))).toEqual([1, 4, 1]); // order matters: hence ring order everywhere
  });
});

describe("error feedback", () => {
  it("corrects with the committed residual; a discarded (aborted) attempt leaves it exactly as it was", () => {
    const feedback = new ErrorFeedback(3);
    expect(Array.from(feedback.correct(Float32Array.from([1, 2, 3])))).toEqual([1, 2, 3]);
    feedback.hold(7, Float32Array.from([0.5, 0, -1]));
    expect(feedback.pendingAttempts()).toEqual([7]);
    feedback.commit(7);
    const committed = feedback.residual();
    expect(Array.from(committed)).toEqual([0.5, 0, -1]);
    const gradient = Float32Array.from([1, 2, 3]);
    expect(Array.from(feedback.correct(gradient))).toEqual([1.5, 2, 2]);
    expect(Array.from(gradient)).toEqual([1, 2, 3]);

    feedback.hold(8, Float32Array.from([9, 9, 9]));
    feedback.discard(8);
    expect(Array.from(feedback.residual())).toEqual(Array.from(committed));
    expect(feedback.pendingAttempts()).toEqual([]);
    feedback.discard(8); // an attempt may abort before it held anything
    expect(Array.from(feedback.correct(gradient))).toEqual([1.5, 2, 2]);
  });

  it("commit of an attempt that is not pending throws a clear error and changes nothing", () => {
    const feedback = new ErrorFeedback(2);
    feedback.hold(3, Float32Array.from([1, 1]));
    expect(() => feedback.commit(4)).toThrow(/cannot commit attempt 4: no residual is held for it \(held: 3\)/);
    feedback.discard(3);
    expect(() => feedback.commit(3)).toThrow(/cannot commit attempt 3: no residual is held for it \(held: none\)/);
    expect(Array.from(feedback.residual())).toEqual([0, 0]);
  });

  it("committing one attempt drops the other pending ones; holding is copied and checked", () => {
    const feedback = new ErrorFeedback(2);
    const residual = Float32Array.from([1, 2]);
    feedback.hold(1, residual);
    feedback.hold(2, Float32Array.from([3, 4]));
    residual[0] = 100;
    feedback.commit(1);
    expect(Array.from(feedback.residual())).toEqual([1, 2]);
    expect(() => feedback.commit(2)).toThrow(/cannot commit attempt 2/);
    expect(() => feedback.hold(5, new Float32Array(3))).toThrow(/3 elements, error feedback has 2/);
    expect(() => feedback.hold(5, Float32Array.from([Number.NaN, 0]))).toThrow(/non-finite/);
    feedback.hold(5, new Float32Array(2));
    expect(() => feedback.hold(5, new Float32Array(2))).toThrow(/already holds/);
    expect(() => feedback.correct(new Float32Array(1))).toThrow(/1 elements/);
  });
});
