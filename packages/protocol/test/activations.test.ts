import { describe, expect, it } from "vitest";
import {
  ACTIVATION_DIRECTION_IDS,
  ACTIVATION_FRAME_VERSION,
  ACTIVATION_HEADER_BYTES,
  decodeActivationFrame,
  encodeActivation,
  encodeActivationFrame,
  encodeDataFrame,
  FrameDecodeError,
  FrameKind,
  MAX_FRAME_BYTES,
  mulberry32,
  type ActivationHeader,
} from "../src/index.ts";

const HEADER: ActivationHeader = { direction: "forward", attempt: 0xfffffff0, micro: 513, stage: 3, shape: [5, 2, 3] };
const ramp = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3);

describe("activation frames", () => {
  it("round-trip header, shape, offset and values, the values viewed in place", () => {
    const values = ramp(30);
    const bytes = encodeActivationFrame(HEADER, 0, values);
    expect(bytes.byteLength).toBe(ACTIVATION_HEADER_BYTES + 120);
    expect([bytes[0], bytes[1]]).toEqual([ACTIVATION_FRAME_VERSION, ACTIVATION_DIRECTION_IDS.forward]);
    const frame = decodeActivationFrame(bytes);
    expect(frame).toMatchObject({ ...HEADER, offset: 0 });
    expect(Array.from(frame.values)).toEqual(Array.from(values));
    expect(frame.values.buffer).toBe(bytes.buffer);
  });

  it("cut a tensor into frames that fit the limit and cover it once, in order", () => {
    const shape = [200, 784];
    const values = ramp(200 * 784);
    const frames = encodeActivation({ ...HEADER, direction: "backward", shape }, values);
    expect(frames.length).toBe(Math.ceil(values.byteLength / (MAX_FRAME_BYTES - ACTIVATION_HEADER_BYTES)));
    let next = 0;
    const joined = new Float32Array(values.length);
    for (const bytes of frames) {
      expect(bytes.byteLength).toBeLessThanOrEqual(MAX_FRAME_BYTES);
      const frame = decodeActivationFrame(bytes);
      expect(frame.direction).toBe("backward");
      expect(frame.offset).toBe(next);
      joined.set(frame.values, frame.offset);
      next += frame.values.length;
    }
    expect(next).toBe(values.length);
    expect(joined.every((x, i) => x === values[i])).toBe(true);
    // A smaller link limit means more, smaller frames.
    expect(encodeActivation({ ...HEADER, shape: [5, 6] }, ramp(30), ACTIVATION_HEADER_BYTES + 16).length).toBe(8);
  });

  it("refuse to encode what the header cannot carry", () => {
    expect(() => encodeActivation({ ...HEADER, shape: [2, 3] }, ramp(5))).toThrow(/does not fill/);
    expect(() => encodeActivation({ ...HEADER, shape: [1, 1, 1, 1, 2] }, ramp(2))).toThrow(/1 to 4 dimensions/);
    expect(() => encodeActivation({ ...HEADER, shape: [0, 3] }, ramp(0))).toThrow(/empty dimension/);
    expect(() => encodeActivation({ ...HEADER, micro: 70_000, shape: [2] }, ramp(2))).toThrow(/micro=70000/);
    expect(() => encodeActivation({ ...HEADER, stage: 256, shape: [2] }, ramp(2))).toThrow(/stage=256/);
    expect(() => encodeActivationFrame({ ...HEADER, shape: [2, 2] }, 3, ramp(2))).toThrow(/outside a tensor of 4/);
    expect(() => encodeActivation({ ...HEADER, shape: [2] }, ramp(2), ACTIVATION_HEADER_BYTES + 3)).toThrow(/no room/);
  });

  it("decode nothing malformed: each defect is a FrameDecodeError saying what", () => {
    const good = encodeActivationFrame({ ...HEADER, shape: [2, 3] }, 2, ramp(3));
    const mutate = (at: number, value: number): Uint8Array => {
      const bytes = good.slice();
      bytes[at] = value;
      return bytes;
    };
    const cases: [Uint8Array, RegExp][] = [
      [good.subarray(0, 20), /shorter than its 32-byte header/],
      [new Uint8Array(MAX_FRAME_BYTES + 4), /exceeds MAX_FRAME_BYTES/],
      [mutate(0, 2), /version 2/],
      [mutate(1, 3), /unknown direction 3/],
      [mutate(9, 0), /rank 0/],
      [mutate(9, 5), /rank 5/],
      [mutate(10, 1), /reserved header byte 10/],
      [mutate(20, 7), /dimension 2 = 7; unused dimensions must be 0/],
      [mutate(12, 0), /empty dimension/],
      [mutate(28, 4), /3 elements at 4 is outside its tensor of 6/],
      [good.subarray(0, good.byteLength - 2), /not a positive whole number of float32/],
      [good.subarray(0, ACTIVATION_HEADER_BYTES), /not a positive whole number of float32/],
    ];
    for (const [bytes, message] of cases) {
      expect(() => decodeActivationFrame(bytes)).toThrow(FrameDecodeError);
      expect(() => decodeActivationFrame(bytes)).toThrow(message);
    }
  });

  it("refuse an all-reduce frame sent on the activations channel by its kind byte", () => {
    const ring = encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0 }, ramp(8));
    ring[0] = ACTIVATION_FRAME_VERSION; // even with a matching version byte
    expect(() => decodeActivationFrame(ring)).toThrow(/unknown direction 1/);
  });

  it("decode unaligned bytes (a copy) to the same values", () => {
    const bytes = encodeActivationFrame({ ...HEADER, shape: [4] }, 0, ramp(4));
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    expect(Array.from(decodeActivationFrame(shifted.subarray(1)).values)).toEqual(Array.from(ramp(4)));
  });

  it("survive 5,000 seeded random mutations: each decodes to a frame inside its tensor or throws FrameDecodeError", () => {
    const random = mulberry32(0xac71);
    const base = encodeActivationFrame({ ...HEADER, shape: [3, 4] }, 4, ramp(6));
    let decoded = 0;
    for (let i = 0; i < 5_000; i++) {
      const bytes = random() < 0.1 ? Uint8Array.from({ length: Math.floor(random() * 80) }, () => Math.floor(random() * 256)) : base.slice(0, random() < 0.2 ? Math.floor(random() * base.length) : base.length);
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips && bytes.length > 0; f++) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256);
      try {
        const frame = decodeActivationFrame(bytes);
        decoded++;
        const elements = frame.shape.reduce((a, b) => a * b, 1);
        expect(frame.offset + frame.values.length).toBeLessThanOrEqual(elements);
        expect(frame.shape.length).toBeGreaterThanOrEqual(1);
      } catch (error) {
        expect(error).toBeInstanceOf(FrameDecodeError);
      }
    }
    // Flips in the payload leave a valid frame: the fuzz reached both outcomes.
    expect(decoded).toBeGreaterThan(100);
    expect(decoded).toBeLessThan(5_000);
  });
});
