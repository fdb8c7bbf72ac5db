import { describe, expect, it } from "vitest";
import { decodeState, encodeState, StateError, type ModelState } from "../src/index.ts";

const sample = (): ModelState => ({
  round: 12,
  hash: "0123456789abcdef".repeat(4),
  weights: Float32Array.from([1, -2.5, 3e-9, 0]),
  optimizer: { kind: "adam", step: 12, scalars: [0.28, 0.98], buffers: [Float32Array.from([1, 2, 3, 4]), Float32Array.from([5, 6, 7, 8])] },
});

describe("model state codec", () => {
  it("round-trips weights and optimizer state bit for bit, into fresh arrays", () => {
    const bytes = encodeState(sample());
    const back = decodeState(bytes, 4);
    expect(back.round).toBe(12);
    expect(back.hash).toBe("0123456789abcdef".repeat(4));
    expect(Array.from(back.weights)).toEqual(Array.from(sample().weights));
    expect(back.optimizer.buffers.map((b) => Array.from(b))).toEqual([[1, 2, 3, 4], [5, 6, 7, 8]]);
    expect(back.optimizer).toMatchObject({ kind: "adam", step: 12, scalars: [0.28, 0.98] });
    back.weights[0] = 99;
    expect(decodeState(bytes).weights[0]).toBe(1);
  });

  it("decodes at an unaligned offset", () => {
    const bytes = encodeState(sample());
    const shifted = new Uint8Array(bytes.byteLength + 3);
    shifted.set(bytes, 3);
    expect(Array.from(decodeState(shifted.subarray(3)).weights)).toEqual(Array.from(sample().weights));
  });

  it("decodes from a Node Buffer that views a shared pool", () => {
    const bytes = encodeState(sample());
    const pooled = Buffer.concat([Buffer.alloc(5), Buffer.from(bytes)]).subarray(5);
    expect(Array.from(decodeState(pooled).weights)).toEqual(Array.from(sample().weights));
  });

  const corrupt: [string, (b: Uint8Array) => Uint8Array, RegExp][] = [
    ["bad magic", (b) => Uint8Array.from([0x58, ...b.subarray(1)]), /not a model state/],
    ["truncated", (b) => b.subarray(0, b.byteLength - 4), /header promises/],
    ["too short", () => new Uint8Array(5), /too short/],
    ["wrong version", (b) => { const c = b.slice(); c[4] = 9; return c; }, /version 9/],
  ];
  for (const [name, mutate, pattern] of corrupt) {
    it(`rejects a ${name} state with StateError`, () => {
      expect(() => decodeState(mutate(encodeState(sample())))).toThrow(StateError);
      expect(() => decodeState(mutate(encodeState(sample())))).toThrow(pattern);
    });
  }

  it("rejects a state for another model size, and inconsistent buffers on encode", () => {
    expect(() => decodeState(encodeState(sample()), 5)).toThrow(/4 weights, the model has 5/);
    const bad = sample();
    bad.optimizer.buffers[1] = new Float32Array(3);
    expect(() => encodeState(bad)).toThrow(StateError);
  });
});
