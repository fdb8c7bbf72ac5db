import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { DirectPlanSchema, planMembers, PlanSchema, type DirectPlan, decodeAnyFrame, decodeDirectFrame, decodeFrame, encodeAbortFrame, encodeDataFrame, FRAME_HEADER_BYTES, FrameDecodeError, FrameKind, MAX_FRAME_BYTES } from "../src/index.ts";

describe("frame codec", () => {
  it("round-trips a data frame, with the payload as a zero-copy view", () => {
    const payload = Float32Array.from([1.5, -2, 3e-8, 0]);
    const bytes = encodeDataFrame({ kind: FrameKind.AllGather, attempt: 0xfffffffe, step: 7, segment: 3, offset: 1024 }, payload);
    expect(bytes.byteLength).toBe(FRAME_HEADER_BYTES + 16);
    const frame = decodeFrame(bytes);
    expect(frame).toMatchObject({ kind: FrameKind.AllGather, attempt: 0xfffffffe, step: 7, segment: 3, offset: 1024 });
    if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
    expect(Array.from(frame.payload)).toEqual(Array.from(payload));
    expect(frame.payload.buffer).toBe(bytes.buffer);
  });

  it("decodes a payload at an odd byte offset by copying", () => {
    const bytes = encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0 }, Float32Array.from([4, 5]));
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    const frame = decodeFrame(shifted.subarray(1));
    if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
    expect(Array.from(frame.payload)).toEqual([4, 5]);
  });

  it("round-trips an abort frame, non-ASCII text included", () => {
    const frame = decodeFrame(encodeAbortFrame({ attempt: 9, suspect: "peer-ü", reason: "link closed — gone" }));
    expect(frame).toEqual({ kind: FrameKind.Abort, attempt: 9, suspect: "peer-ü", reason: "link closed — gone" });
  });

  it("round-trips the direct layout's scatter and gather frames (step 0, shard index in segment)", () => {
    for (const kind of [FrameKind.DirectScatter, FrameKind.DirectGather]) {
      const payload = Float32Array.from([3e38, -1, 0.25]);
      const bytes = encodeDataFrame({ kind, attempt: 12, step: 0, segment: 6, offset: 4096 }, payload);
      expect(bytes[1]).toBe(kind);
      const frame = decodeDirectFrame(bytes);
      expect(frame).toMatchObject({ kind, attempt: 12, step: 0, segment: 6, offset: 4096 });
      if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
      expect(Array.from(frame.payload)).toEqual(Array.from(payload));
      expect(frame.payload.buffer).toBe(bytes.buffer);
      expect(decodeAnyFrame(bytes)).toMatchObject({ kind, segment: 6 });
    }
  });

  it("each layout's decoder refuses the other layout's data frames, and both read aborts", () => {
    const direct = encodeDataFrame({ kind: FrameKind.DirectGather, attempt: 3, step: 0, segment: 1, offset: 0 }, Float32Array.from([1]));
    const ring = encodeDataFrame({ kind: FrameKind.AllGather, attempt: 3, step: 0, segment: 1, offset: 0 }, Float32Array.from([1]));
    expect(() => decodeFrame(direct)).toThrow(FrameDecodeError);
    expect(() => decodeFrame(direct)).toThrow(/kind 5 belongs to the direct layout/);
    expect(() => decodeDirectFrame(ring)).toThrow(FrameDecodeError);
    expect(() => decodeDirectFrame(ring)).toThrow(/kind 2 belongs to the ring/);
    const abort = encodeAbortFrame({ attempt: 3, suspect: "p", reason: "r" });
    expect(decodeFrame(abort)).toEqual(decodeDirectFrame(abort));
  });

  it("keeps the ring kinds' wire values and header layout unchanged", () => {
    expect([FrameKind.ReduceScatter, FrameKind.AllGather, FrameKind.Abort, FrameKind.DirectScatter, FrameKind.DirectGather]).toEqual([1, 2, 3, 4, 5]);
    const bytes = encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 0x01020304, step: 0x0506, segment: 0x0708090a, offset: 0x0b0c0d0e }, Float32Array.from([1]));
    expect(Array.from(bytes.subarray(0, FRAME_HEADER_BYTES))).toEqual([1, 1, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x0a, 0x09, 0x08, 0x07, 0x0e, 0x0d, 0x0c, 0x0b]);
  });

  it("refuses to encode a direct frame with a step (the field is reserved)", () => {
    expect(() => encodeDataFrame({ kind: FrameKind.DirectScatter, attempt: 1, step: 1, segment: 0, offset: 0 }, new Float32Array(1))).toThrow(/step must be 0/);
  });

  it("refuses to encode out-of-range fields or an oversize payload", () => {
    expect(() => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: -1, step: 0, segment: 0, offset: 0 }, new Float32Array(1))).toThrow(/attempt/);
    expect(() => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 70000, segment: 0, offset: 0 }, new Float32Array(1))).toThrow(/step/);
    expect(() => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0 }, new Float32Array(MAX_FRAME_BYTES / 4))).toThrow(/MAX_FRAME_BYTES/);
  });

  const bad: [string, Uint8Array, RegExp][] = [
    ["short", new Uint8Array(4), /shorter than/],
    ["oversize", new Uint8Array(MAX_FRAME_BYTES + 4), /exceeds/],
    ["version", Uint8Array.from([2, 1, ...new Array<number>(14).fill(0)]), /version 2/],
    ["kind", Uint8Array.from([1, 42, ...new Array<number>(14).fill(0)]), /unknown frame kind 42/],
    ["ragged payload", Uint8Array.from([1, 1, ...new Array<number>(14).fill(0), 1, 2, 3]), /whole number of float32/],
    ["ragged direct payload", Uint8Array.from([1, 4, ...new Array<number>(14).fill(0), 1, 2]), /whole number of float32/],
    ["direct scatter with a step", Uint8Array.from([1, 4, 1, ...new Array<number>(13).fill(0)]), /reserved and must be 0/],
    ["direct gather with a step", Uint8Array.from([1, 5, 0, 1, ...new Array<number>(12).fill(0)]), /carries step 256/],
    ["kind just past the direct kinds", Uint8Array.from([1, 6, ...new Array<number>(14).fill(0)]), /unknown frame kind 6/],
    ["abort body not JSON", Uint8Array.from([1, 3, ...new Array<number>(14).fill(0), 123]), /not ASCII JSON/],
    ["abort body wrong shape", Uint8Array.from([1, 3, ...new Array<number>(14).fill(0), ...Array.from('{"suspect":1}', (c) => c.charCodeAt(0))]), /abort frame body/],
  ];
  for (const [name, bytes, pattern] of bad) {
    it(`rejects ${name} with FrameDecodeError`, () => {
      for (const decode of [decodeFrame, decodeDirectFrame, decodeAnyFrame]) {
        expect(() => decode(bytes)).toThrow(FrameDecodeError);
        expect(() => decode(bytes)).toThrow(pattern);
      }
    });
  }
});

// The plan decides which frame kinds a round uses (ring kinds or direct kinds), so its variants are pinned here too.
describe("communication plans", () => {
  it("the direct plan is a Plan variant; planMembers still works for both", () => {
    const plan: DirectPlan = { kind: "direct", members: ["a", "b", "c"], aggregation: "centered-clip" };
    expect(v.parse(PlanSchema, plan)).toEqual(plan);
    expect(planMembers(v.parse(PlanSchema, plan))).toEqual(["a", "b", "c"]);
    expect(planMembers(v.parse(PlanSchema, { kind: "ring", members: ["x", "y"] }))).toEqual(["x", "y"]);
    for (const aggregation of ["mean", "trimmed-mean", "centered-clip"]) expect(v.safeParse(PlanSchema, { ...plan, aggregation }).success).toBe(true);
  });

  it("refuses a repeated member, an unknown rule, a missing rule and an extra field", () => {
    const plan = { kind: "direct", members: ["a", "b"], aggregation: "mean" };
    expect(v.safeParse(DirectPlanSchema, { ...plan, members: ["a", "a"] }).success).toBe(false);
    expect(v.safeParse(PlanSchema, { ...plan, aggregation: "median" }).success).toBe(false);
    expect(v.safeParse(PlanSchema, { kind: "direct", members: ["a"] }).success).toBe(false);
    expect(v.safeParse(PlanSchema, { ...plan, weights: [1, 2] }).success).toBe(false);
    expect(v.safeParse(PlanSchema, { ...plan, members: [] }).success).toBe(false);
  });
});
