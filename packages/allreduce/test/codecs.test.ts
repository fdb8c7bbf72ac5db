import { describe, expect, it } from "vitest";
import {
  CHUNK_CODECS,
  decodeRingChunk,
  dense,
  elementBound,
  encodeRingChunk,
  fp16,
  fromHalfBits,
  int8,
  ringChunkBytes,
  ringChunkElements,
  ringSumErrorBound,
  toHalfBits,
  type ChunkCodec,
} from "../src/index.ts";
import { sameBits } from "./harness.ts";
import { seededRandom } from "./memory-network.ts";

const F32_MAX = 3.4028234663852886e38;
const f32 = (x: number): number => Math.fround(x);

/** A float32 from random bits, finite only. */
function randomFloat32(random: () => number): number {
  for (;;) {
    const value = new Float32Array(new Uint32Array([Math.floor(random() * 2 ** 32)]).buffer)[0] as number;
    if (Number.isFinite(value)) return value;
  }
}

/** Values spanning many magnitudes and signs, zeros and float32 subnormals included. */
function mixedChunk(random: () => number, length: number, scale: number): Float32Array {
  return Float32Array.from({ length }, (_, k) => {
    if (k % 17 === 3) return 0;
    if (k % 23 === 5) return -1e-45;
    return f32((random() - 0.5) * scale * 10 ** Math.floor(random() * 12 - 10));
  });
}

describe("half precision by hand", () => {
  it("converts known values, with ties to even and subnormals", () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66],
      [65504, 0x7bff],
      [65519, 0x7bff],
      [2 ** -14, 0x0400],
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: to even (0)
      [1.5 * 2 ** -25, 0x0001],
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal units: to even (2)
      [1 + 2 ** -11, 0x3c00], // tie: to even mantissa (0)
      [1 + 3 * 2 ** -11, 0x3c02], // tie: to even mantissa (2)
      [1e-45, 0x0000],
    ];
    for (const [value, bits] of cases) expect(toHalfBits(value), `${value}`).toBe(bits);
  });

  it("refuses values that round beyond the half range, and non-finite ones, instead of making Infinity", () => {
    expect(() => toHalfBits(65520)).toThrow(/beyond/);
    expect(() => toHalfBits(-1e6)).toThrow(/beyond/);
    expect(() => toHalfBits(Infinity)).toThrow(/not finite/);
    expect(() => toHalfBits(Number.NaN)).toThrow(/not finite/);
  });

  it("every finite half survives half -> float -> half, and the shift moves only the exponent", () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      if ((bits & 0x7c00) === 0x7c00) continue;
      const value = fromHalfBits(bits);
      expect(toHalfBits(value)).toBe(bits);
      expect(fromHalfBits(bits, 2 ** 40)).toBe(value * 2 ** 40);
      expect(toHalfBits(f32(value * 2 ** 100), 100)).toBe(bits);
    }
    expect(fromHalfBits(0x7c00)).toBe(Infinity);
    expect(fromHalfBits(0xfc00)).toBe(-Infinity);
    expect(fromHalfBits(0x7e00)).toBeNaN();
  });

  it("rounds random float32 values to the nearest half, ties to even (checked against the neighbours)", () => {
    const random = seededRandom(11);
    for (let k = 0; k < 50_000; k++) {
      const x = f32(randomFloat32(random) % 65504);
      const bits = toHalfBits(x);
      const error = Math.abs(fromHalfBits(bits) - x);
      const magnitudeBits = bits & 0x7fff;
      for (const neighbour of [magnitudeBits - 1, magnitudeBits + 1]) {
        if (neighbour < 0 || neighbour > 0x7bff) continue;
        const other = Math.abs(fromHalfBits(neighbour | (bits & 0x8000)) - x);
        expect(error).toBeLessThanOrEqual(other);
        if (error === other) expect(bits & 1).toBe(0);
      }
    }
  });
});

describe("chunk codecs", () => {
  const lossy: ChunkCodec[] = [fp16, int8];

  for (const codec of [dense, fp16, int8]) {
    it(`${codec.name}: decode(encode(x)) is within the stated bound, over magnitudes from subnormal to near float32's top`, () => {
      const random = seededRandom(3);
      for (const scale of [1e-40, 1e-30, 1, 1e5, 1e20, 1e36, 3e38]) {
        for (const length of [1, 2, 7, 300]) {
          const values = mixedChunk(random, length, scale).map((x) => Math.max(-F32_MAX, Math.min(F32_MAX, x)));
          if (scale === 3e38) values[0] = length > 1 ? -F32_MAX : F32_MAX; // the clamp / scale-step cases
          const bytes = codec.encode(values);
          expect(bytes.byteLength).toBe(codec.encodedBytes(length));
          const decoded = codec.decode(bytes.slice(), length);
          if ("problem" in decoded) throw new Error(decoded.problem);
          const max = values.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
          for (let k = 0; k < length; k++) {
            const got = decoded.values[k] as number;
            expect(Number.isFinite(got)).toBe(true);
            expect(Math.abs(got - (values[k] as number)), `${codec.name} scale ${scale} element ${k}: ${values[k]} -> ${got}`).toBeLessThanOrEqual(elementBound(codec.bound, values[k] as number, max));
          }
        }
      }
    });
  }

  it("dense is exact, and its bytes are the float32 bytes (a view, no copy)", () => {
    const values = Float32Array.from([1.5, -0, 3e38, 1e-45]);
    const bytes = dense.encode(values);
    expect(bytes.buffer).toBe(values.buffer);
    const decoded = dense.decode(bytes, 4);
    if ("problem" in decoded) throw new Error(decoded.problem);
    expect(sameBits(decoded.values, values)).toBe(true);
  });

  it("sizes: fp16 is 2 bytes an element plus a 2-byte scale, int8 1 byte plus a 4-byte scale, nothing for no elements", () => {
    expect([fp16.encodedBytes(0), fp16.encodedBytes(1), fp16.encodedBytes(100)]).toEqual([0, 4, 202]);
    expect([int8.encodedBytes(0), int8.encodedBytes(1), int8.encodedBytes(100)]).toEqual([0, 5, 104]);
    for (const codec of lossy) expect(codec.encode(new Float32Array(0)).byteLength).toBe(0);
  });

  it("fp16 keeps sample-weighted sums far beyond ±65504 (its per-chunk scale), where plain halves would overflow", () => {
    const values = Float32Array.from([1e10, -3.5e9, 12345.678, 0.25]);
    const decoded = fp16.decode(fp16.encode(values), 4);
    if ("problem" in decoded) throw new Error(decoded.problem);
    for (let k = 0; k < 4; k++) expect(Math.abs((decoded.values[k] as number) - (values[k] as number))).toBeLessThanOrEqual(elementBound(fp16.bound, values[k] as number, 1e10));
  });

  it("int8 of an all-zero chunk is a zero scale and exact zeros", () => {
    const bytes = int8.encode(new Float32Array(5));
    expect(Array.from(bytes)).toEqual(new Array<number>(9).fill(0));
    const decoded = int8.decode(bytes, 5);
    if ("problem" in decoded) throw new Error(decoded.problem);
    expect(Array.from(decoded.values)).toEqual([0, 0, 0, 0, 0]);
  });

  const refusals: [string, ChunkCodec, (bytes: Uint8Array) => Uint8Array, RegExp][] = [
    ["fp16 scale below what an encoder makes", fp16, (b) => withInt16(b, 0, -200), /scale 2\^-200 is outside/],
    ["fp16 scale above what an encoder makes", fp16, (b) => withInt16(b, 0, 114), /scale 2\^114 is outside/],
    ["fp16 half Infinity", fp16, (b) => withUint16(b, 4, 0x7c00), /element 1 is a half Infinity or NaN/],
    ["fp16 half NaN", fp16, (b) => withUint16(b, 2, 0xfe01), /element 0 is a half Infinity or NaN/],
    ["fp16 one byte short", fp16, (b) => b.subarray(0, b.length - 1), /fp16 chunk of 7 bytes for 3 elements/],
    ["int8 scale NaN", int8, (b) => withFloat32(b, 0, Number.NaN), /scale NaN is not a finite non-negative/],
    ["int8 scale Infinity", int8, (b) => withFloat32(b, 0, Infinity), /scale Infinity is not a finite non-negative/],
    ["int8 scale negative", int8, (b) => withFloat32(b, 0, -0.5), /scale -0.5 is not a finite non-negative/],
    ["int8 scale -0", int8, (b) => withFloat32(b, 0, -0), /scale -0 is not/],
    ["int8 q of -128", int8, (b) => withByte(b, 6, 0x80), /element 2 is -128/],
    ["int8 one byte too many", int8, (b) => Uint8Array.from([...b, 0]), /int8 chunk of 8 bytes for 3 elements/],
  ];
  for (const [name, codec, corrupt, pattern] of refusals) {
    it(`refuses ${name}`, () => {
      const bytes = codec.encode(Float32Array.from([1, -2, 3]));
      const decoded = codec.decode(corrupt(bytes.slice()), 3);
      expect("problem" in decoded && decoded.problem).toMatch(pattern);
    });
  }
});

describe("ring chunks: the exact sample count and frame sizes", () => {
  it("every chunk of every codec fits frameBytes, and one more element would not", () => {
    for (const codec of Object.values(CHUNK_CODECS)) {
      for (let frameBytes = 4; frameBytes <= 2048; frameBytes += 4) {
        const elements = ringChunkElements(codec, frameBytes);
        if (elements === 0) {
          expect([codec.name, frameBytes]).toEqual(["int8", 4]);
          continue;
        }
        for (const tail of [false, true]) expect(ringChunkBytes(codec, elements, tail)).toBeLessThanOrEqual(frameBytes);
        expect(Math.max(ringChunkBytes(codec, elements + 1, false), ringChunkBytes(codec, elements + 1, true))).toBeGreaterThan(frameBytes);
      }
    }
    expect([dense, fp16, int8].map((codec) => ringChunkElements(codec, 64 * 1024))).toEqual([16384, 32766, 65529]);
  });

  for (const codec of [fp16, int8]) {
    it(`${codec.name}: the chunk holding the last element carries it exactly, and a bad count is refused`, () => {
      const values = Float32Array.from([0.1, -7, 2.5e-3, 16777216]);
      const bytes = encodeRingChunk(codec, values, true);
      expect(bytes.byteLength).toBe(codec.encodedBytes(3) + 4);
      const decoded = decodeRingChunk(codec, bytes, 4, true);
      if ("problem" in decoded) throw new Error(decoded.problem);
      expect(decoded.values[3]).toBe(16777216);
      for (const [count, pattern] of [[1.5, /sample count 1.5 is not a whole number/], [-3, /sample count -3/], [Number.NaN, /non-finite value NaN at element 3/]] as const) {
        const forged = bytes.slice();
        new DataView(forged.buffer).setFloat32(forged.length - 4, count, true);
        const refused = decodeRingChunk(codec, forged, 4, true);
        expect("problem" in refused && refused.problem).toMatch(pattern);
      }
    });
  }

  it("dense chunks with the count are plain float32 bytes, as before codecs", () => {
    const values = Float32Array.from([1, 2, 3, 7]);
    expect(Array.from(encodeRingChunk(dense, values, true))).toEqual(Array.from(new Uint8Array(values.buffer)));
    expect(decodeRingChunk(dense, new Uint8Array(values.buffer), 4, true)).toEqual({ values });
  });

  it("the ring bound grows with N and with the codec's coarseness", () => {
    for (const n of [1, 2, 8]) {
      const [d, h, q] = [dense, fp16, int8].map((codec) => ringSumErrorBound(codec, n, 1));
      expect(d).toBeGreaterThan(0);
      expect(d).toBeLessThan(h!);
      expect(h).toBeLessThan(q!);
      expect(q).toBeLessThan((n * 1.05) / 254 + 1e-6);
    }
  });
});

function withInt16(bytes: Uint8Array, at: number, value: number): Uint8Array {
  new DataView(bytes.buffer, bytes.byteOffset).setInt16(at, value, true);
  return bytes;
}
function withUint16(bytes: Uint8Array, at: number, value: number): Uint8Array {
  new DataView(bytes.buffer, bytes.byteOffset).setUint16(at, value, true);
  return bytes;
}
function withFloat32(bytes: Uint8Array, at: number, value: number): Uint8Array {
  new DataView(bytes.buffer, bytes.byteOffset).setFloat32(at, value, true);
  return bytes;
}
function withByte(bytes: Uint8Array, at: number, value: number): Uint8Array {
  bytes[at] = value;
  return bytes;
}
