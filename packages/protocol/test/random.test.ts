import { describe, expect, it } from "vitest";
import { mulberry32, mulberry32Uint32 } from "../src/index.ts";

describe("mulberry32 (every seeded order in the project)", () => {
  it("draws the same bits as ever: sample orders and the built MNIST dataset depend on them", () => {
    // Golden values of the MNIST build's shuffle seed, from before the copies were merged.
    const next = mulberry32Uint32(0x5eed_2024);
    expect(Array.from({ length: 5 }, next)).toEqual([2962071146, 4245639001, 2989943793, 1278164722, 1213797805]);
    const random = mulberry32(1);
    expect(Array.from({ length: 3 }, random)).toEqual([0.6270739405881613, 0.002735721180215478, 0.5274470399599522]);
  });

  it("floats are the integer draws over 2^32, in [0, 1)", () => {
    const ints = mulberry32Uint32(42);
    const floats = mulberry32(42);
    for (let k = 0; k < 1_000; k++) {
      const u = ints();
      const f = floats();
      expect(f).toBe(u / 2 ** 32);
      expect(Number.isInteger(u) && u >= 0 && u < 2 ** 32).toBe(true);
    }
  });

  it("the seed is taken as an unsigned 32-bit integer, and different seeds give different streams", () => {
    expect(mulberry32(-1)()).toBe(mulberry32(2 ** 32 - 1)());
    expect(mulberry32(1)()).not.toBe(mulberry32(2)());
  });
});
