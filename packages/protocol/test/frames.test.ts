import { describe, expect, it } from "vitest";
import { decodeFrame, encodeAbortFrame, encodeDataFrame, FRAME_HEADER_BYTES, FrameDecodeError, FrameKind, MAX_FRAME_BYTES } from "../src/index.ts";

describe("frame codec", () => {
  it("round-trips a data frame, with the payload as a zero-copy view", () => {
    const payload = Float32Array.from([1.5, -2, 3e-8, 0]);
    const bytes = encodeDataFrame({ kind: FrameKind.AllGather, round: 0xfffffffe, step: 7, segment: 3, offset: 1024 }, payload);
    expect(bytes.byteLength).toBe(FRAME_HEADER_BYTES + 16);
    const frame = decodeFrame(bytes);
    expect(frame).toMatchObject({ kind: FrameKind.AllGather, round: 0xfffffffe, step: 7, segment: 3, offset: 1024 });
    if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
    expect(Array.from(frame.payload)).toEqual(Array.from(payload));
    expect(frame.payload.buffer).toBe(bytes.buffer);
  });

  it("decodes a payload at an odd byte offset by copying", () => {
    const bytes = encodeDataFrame({ kind: FrameKind.ReduceScatter, round: 1, step: 0, segment: 0, offset: 0 }, Float32Array.from([4, 5]));
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    const frame = decodeFrame(shifted.subarray(1));
    if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
    expect(Array.from(frame.payload)).toEqual([4, 5]);
  });

  it("round-trips an abort frame, non-ASCII text included", () => {
    const frame = decodeFrame(encodeAbortFrame({ round: 9, suspect: "peer-ü", reason: "link closed — gone" }));
    expect(frame).toEqual({ kind: FrameKind.Abort, round: 9, suspect: "peer-ü", reason: "link closed — gone" });
  });

  it("refuses to encode out-of-range fields or an oversize payload", () => {
    expect(() => encodeDataFrame({ kind: FrameKind.ReduceScatter, round: -1, step: 0, segment: 0, offset: 0 }, new Float32Array(1))).toThrow(/round/);
    expect(() => encodeDataFrame({ kind: FrameKind.ReduceScatter, round: 1, step: 70000, segment: 0, offset: 0 }, new Float32Array(1))).toThrow(/step/);
    expect(() => encodeDataFrame({ kind: FrameKind.ReduceScatter, round: 1, step: 0, segment: 0, offset: 0 }, new Float32Array(MAX_FRAME_BYTES / 4))).toThrow(/MAX_FRAME_BYTES/);
  });

  const bad: [string, Uint8Array, RegExp][] = [
    ["short", new Uint8Array(4), /shorter than/],
    ["oversize", new Uint8Array(MAX_FRAME_BYTES + 4), /exceeds/],
    ["version", Uint8Array.from([2, 1, ...new Array<number>(14).fill(0)]), /version 2/],
    ["kind", Uint8Array.from([1, 42, ...new Array<number>(14).fill(0)]), /unknown frame kind 42/],
    ["ragged payload", Uint8Array.from([1, 1, ...new Array<number>(14).fill(0), 1, 2, 3]), /whole number of float32/],
    ["abort body not JSON", Uint8Array.from([1, 3, ...new Array<number>(14).fill(0), 123]), /not ASCII JSON/],
    ["abort body wrong shape", Uint8Array.from([1, 3, ...new Array<number>(14).fill(0), ...Array.from('{"suspect":1}', (c) => c.charCodeAt(0))]), /abort frame body/],
  ];
  for (const [name, bytes, pattern] of bad) {
    it(`rejects ${name} with FrameDecodeError`, () => {
      expect(() => decodeFrame(bytes)).toThrow(FrameDecodeError);
      expect(() => decodeFrame(bytes)).toThrow(pattern);
    });
  }
});
