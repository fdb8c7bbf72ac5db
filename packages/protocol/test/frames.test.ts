import * as v from "valibot";
import { describe, expect, it } from "vitest";
import {
  DirectPlanSchema,
  planMembers,
  PlanSchema,
  torusAttached,
  planGrid,
  gridDimOf,
  gridStage,
  torusRows,
  type Codec,
  type DirectPlan,
  decodeAnyFrame,
  decodeDirectFrame,
  decodeFrame,
  encodeAbortFrame,
  encodeCodedFrame,
  encodeDataFrame,
  FRAME_CODEC_IDS,
  FRAME_HEADER_BYTES,
  FRAME_VERSION,
  FrameDecodeError,
  FrameKind,
  MAX_FRAME_BYTES,
  RingStage,
} from "../src/index.ts";

/** A frame of the current version: header bytes after version and kind, then the payload. */
const raw = (kind: number, rest: number[], payload: number[] = []): Uint8Array => {
  const header = [FRAME_VERSION, kind, ...rest, ...new Array<number>(FRAME_HEADER_BYTES - 2 - rest.length).fill(0)];
  return Uint8Array.from([...header, ...payload]);
};
/** Header bytes 2..15 (step, attempt, segment, offset) zero, then the codec byte. */
const withCodec = (codec: number): number[] => [...new Array<number>(14).fill(0), codec];
const DENSE = FRAME_CODEC_IDS.dense;

describe("frame codec", () => {
  it("round-trips a data frame, with the payload as a zero-copy view", () => {
    const payload = Float32Array.from([1.5, -2, 3e-8, 0]);
    const bytes = encodeDataFrame({ kind: FrameKind.AllGather, attempt: 0xfffffffe, step: 7, segment: 3, offset: 1024 }, payload);
    expect(bytes.byteLength).toBe(FRAME_HEADER_BYTES + 16);
    const frame = decodeFrame(bytes);
    expect(frame).toMatchObject({ kind: FrameKind.AllGather, attempt: 0xfffffffe, step: 7, segment: 3, offset: 1024, codec: "dense" });
    if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
    expect(Array.from(new Float32Array(frame.payload.slice().buffer))).toEqual(Array.from(payload));
    expect(frame.payload.buffer).toBe(bytes.buffer);
    expect(frame.payload.byteOffset).toBe(FRAME_HEADER_BYTES);
  });

  it("round-trips a ring frame of every codec, payload bytes unchanged and viewed in place", () => {
    const codecs: Codec[] = ["dense", "fp16", "int8", "topk"];
    for (const codec of codecs) {
      // Lengths no codec layout would make (odd, 3): this layer carries the bytes, the codec checks them.
      const payload = codec === "dense" ? Uint8Array.from([0, 0, 0x80, 0x3f]) : Uint8Array.from([1, 2, 3, 250, 255].slice(0, codec === "fp16" ? 3 : 5));
      for (const kind of [FrameKind.ReduceScatter, FrameKind.AllGather]) {
        const bytes = encodeCodedFrame({ kind, attempt: 77, step: 2, segment: 5, offset: 96, codec }, payload);
        expect(bytes.byteLength).toBe(FRAME_HEADER_BYTES + payload.byteLength);
        expect(bytes[16]).toBe(FRAME_CODEC_IDS[codec]);
        const frame = decodeFrame(bytes);
        expect(frame).toMatchObject({ kind, attempt: 77, step: 2, segment: 5, offset: 96, codec });
        if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
        expect(Array.from(frame.payload)).toEqual(Array.from(payload));
        expect(frame.payload.buffer).toBe(bytes.buffer);
        expect(decodeAnyFrame(bytes)).toMatchObject({ codec });
      }
    }
  });

  it("a dense coded frame has exactly the bytes of encodeDataFrame", () => {
    const values = Float32Array.from([1.5, -0, 3e38]);
    const header = { kind: FrameKind.ReduceScatter, attempt: 4, step: 1, segment: 2, offset: 32 } as const;
    const coded = encodeCodedFrame({ ...header, codec: "dense" }, new Uint8Array(values.buffer));
    expect(Array.from(coded)).toEqual(Array.from(encodeDataFrame(header, values)));
  });

  it("refuses to encode a coded frame of a direct kind, an unknown codec, or a ragged dense payload", () => {
    expect(() => encodeCodedFrame({ kind: FrameKind.DirectScatter as never, attempt: 1, step: 0, segment: 0, offset: 0, codec: "dense" }, new Uint8Array(4))).toThrow(/ring frames/);
    expect(() => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "bf16" as Codec }, new Uint8Array(4))).toThrow(/unknown codec bf16/);
    expect(() => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "dense" }, new Uint8Array(6))).toThrow(/whole number of float32/);
    expect(() => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "int8" }, new Uint8Array(MAX_FRAME_BYTES))).toThrow(/MAX_FRAME_BYTES/);
  });

  it("the largest coded frame that fits is exactly MAX_FRAME_BYTES, header included", () => {
    const fits = encodeCodedFrame({ kind: FrameKind.AllGather, attempt: 1, step: 0, segment: 0, offset: 0, codec: "int8" }, new Uint8Array(MAX_FRAME_BYTES - FRAME_HEADER_BYTES));
    expect(fits.byteLength).toBe(MAX_FRAME_BYTES);
    expect(decodeFrame(fits)).toMatchObject({ codec: "int8" });
  });

  it("decodes a payload at an odd byte offset by copying", () => {
    const bytes = encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0 }, Float32Array.from([4, 5]));
    const shifted = new Uint8Array(bytes.byteLength + 1);
    shifted.set(bytes, 1);
    const frame = decodeFrame(shifted.subarray(1));
    if (frame.kind === FrameKind.Abort) throw new Error("wrong kind");
    // Ring payloads are bytes: a view at the odd offset, which the codec reads without aligning.
    expect(Array.from(new Float32Array(frame.payload.slice().buffer))).toEqual([4, 5]);
    const direct = encodeDataFrame({ kind: FrameKind.DirectGather, attempt: 1, step: 0, segment: 0, offset: 0 }, Float32Array.from([6, 7]));
    const shiftedDirect = new Uint8Array(direct.byteLength + 1);
    shiftedDirect.set(direct, 1);
    const decoded = decodeDirectFrame(shiftedDirect.subarray(1));
    if (decoded.kind === FrameKind.Abort) throw new Error("wrong kind");
    expect(Array.from(decoded.payload)).toEqual([6, 7]);
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
      expect(bytes[16]).toBe(DENSE);
      const frame = decodeDirectFrame(bytes);
      expect(frame).toMatchObject({ kind, attempt: 12, step: 0, segment: 6, offset: 4096 });
      expect(frame).not.toHaveProperty("codec");
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

  it("pins the kinds' and codecs' wire values and the version-3 header layout", () => {
    expect([FrameKind.ReduceScatter, FrameKind.AllGather, FrameKind.Abort, FrameKind.DirectScatter, FrameKind.DirectGather]).toEqual([1, 2, 3, 4, 5]);
    expect(FRAME_CODEC_IDS).toEqual({ dense: 1, fp16: 2, int8: 3, topk: 4 });
    expect([FRAME_VERSION, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES % 4]).toEqual([3, 20, 0]);
    expect(RingStage).toEqual({ Ring: 0, TorusRow: 1, TorusColumn: 2, TorusAttach: 3 });
    const bytes = encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 0x01020304, step: 0x0506, segment: 0x0708090a, offset: 0x0b0c0d0e }, Float32Array.from([1]));
    expect(Array.from(bytes.subarray(0, FRAME_HEADER_BYTES))).toEqual([3, 1, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x0a, 0x09, 0x08, 0x07, 0x0e, 0x0d, 0x0c, 0x0b, 1, 0, 0, 0]);
    const coded = encodeCodedFrame({ kind: FrameKind.AllGather, attempt: 0x01020304, step: 0x0506, segment: 0x0708090a, offset: 0x0b0c0d0e, codec: "topk", stage: RingStage.TorusColumn }, new Uint8Array(8));
    expect(Array.from(coded.subarray(0, FRAME_HEADER_BYTES))).toEqual([3, 2, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x0a, 0x09, 0x08, 0x07, 0x0e, 0x0d, 0x0c, 0x0b, 4, 2, 0, 0]);
    expect(decodeFrame(coded)).toMatchObject({ kind: FrameKind.AllGather, stage: RingStage.TorusColumn, codec: "topk" });
    const abort = encodeAbortFrame({ attempt: 9, suspect: "", reason: "" });
    expect(Array.from(abort.subarray(0, FRAME_HEADER_BYTES))).toEqual([3, 3, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it("refuses to encode a stage on anything but a ring data frame, or an unknown stage", () => {
    expect(() => encodeDataFrame({ kind: FrameKind.DirectGather, attempt: 1, step: 0, segment: 0, offset: 0, stage: RingStage.TorusRow } as never, new Float32Array(1))).toThrow(/cannot carry stage 1/);
    expect(() => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "dense", stage: 14 as RingStage }, new Uint8Array(4))).toThrow(/cannot carry stage 14/);
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
    ["a version-1 (16-byte header) frame", Uint8Array.from([1, 1, ...new Array<number>(14).fill(0), 0, 0, 0x80, 0x3f]), /version 1, expected 3/],
    ["oversize", new Uint8Array(MAX_FRAME_BYTES + 4), /exceeds/],
    ["version", Uint8Array.from([2, 1, ...withCodec(DENSE), 0, 0, 0]), /version 2/],
    ["kind", raw(42, withCodec(DENSE)), /unknown frame kind 42/],
    ["ragged payload", raw(1, withCodec(DENSE), [1, 2, 3]), /whole number of float32/],
    ["ragged direct payload", raw(4, withCodec(DENSE), [1, 2]), /whole number of float32/],
    ["direct scatter with a step", raw(4, [1, ...withCodec(DENSE).slice(1)]), /reserved and must be 0/],
    ["direct gather with a step", raw(5, [0, 1, ...withCodec(DENSE).slice(2)]), /carries step 256/],
    ["kind just past the direct kinds", raw(6, withCodec(DENSE)), /unknown frame kind 6/],
    ["ring data frame without a codec (byte 0)", raw(1, withCodec(0), [0, 0, 0, 0]), /unknown codec 0/],
    ["ring data frame with an unknown codec", raw(2, withCodec(5), [0, 0, 0, 0]), /unknown codec 5/],
    ["ring data frame with codec 255", raw(1, withCodec(255)), /unknown codec 255/],
    ["direct frame with an unknown codec", raw(4, withCodec(9), [0, 0, 0, 0]), /unknown codec 9/],
    ["direct scatter with codec fp16", raw(4, withCodec(FRAME_CODEC_IDS.fp16), [0, 0, 0, 0]), /codec fp16; the direct layout is float32 \(dense\) only/],
    ["direct gather with codec int8", raw(5, withCodec(FRAME_CODEC_IDS.int8), [0, 0, 0, 0]), /codec int8/],
    ["direct gather with codec topk", raw(5, withCodec(FRAME_CODEC_IDS.topk), [0, 0, 0, 0, 0, 0, 0, 0]), /codec topk/],
    ["a non-zero reserved byte", raw(1, [...withCodec(DENSE), 0, 7]), /reserved header byte 18 is 7/],
    ["an unknown stage", raw(1, [...withCodec(DENSE), 14]), /unknown stage 14/],
    ["a direct frame with a stage", raw(4, [...withCodec(DENSE), RingStage.TorusRow]), /kind 4 carries stage 1/],
    ["an abort frame with a stage", raw(3, [...withCodec(0), RingStage.TorusColumn], Array.from('{"suspect":"p","reason":"r"}', (c) => c.charCodeAt(0))), /kind 3 carries stage 2/],
    ["abort with a codec byte", raw(3, withCodec(DENSE), Array.from('{"suspect":"p","reason":"r"}', (c) => c.charCodeAt(0))), /abort frame carries codec byte 1/],
    ["abort body not JSON", raw(3, [], [123]), /not ASCII JSON/],
    ["abort body wrong shape", raw(3, [], Array.from('{"suspect":1}', (c) => c.charCodeAt(0))), /abort frame body/],
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

  it("a torus plan: a grid row by row, then at most one attached member per row", () => {
    const plan = v.parse(PlanSchema, { kind: "torus", members: ["a", "b", "c", "d", "e", "f", "g"], columns: 3, rows: 2 });
    if (plan.kind !== "torus") throw new Error("not a torus");
    expect(torusRows(plan)).toEqual([["a", "b", "c"], ["d", "e", "f"]]);
    expect(torusAttached(plan)).toEqual(["g"]);
    expect(planMembers(plan)).toEqual(["a", "b", "c", "d", "e", "f", "g"]);
    const torus = { kind: "torus", members: ["a", "b", "c", "d"], columns: 2, rows: 2 };
    expect(v.safeParse(PlanSchema, torus).success).toBe(true);
    expect(v.safeParse(PlanSchema, { ...torus, columns: 3 }).issues?.[0]?.message).toMatch(/needs that many members/);
    expect(v.safeParse(PlanSchema, { ...torus, columns: 1, rows: 1 }).issues?.[0]?.message).toMatch(/at most one member per row/);
    expect(v.safeParse(PlanSchema, { ...torus, members: ["a", "b", "a", "d"] }).issues?.[0]?.message).toMatch(/each member once/);
    for (const columns of [0, 1.5, -2, "2"]) expect(v.safeParse(PlanSchema, { ...torus, columns }).success).toBe(false);
    expect(v.safeParse(PlanSchema, { ...torus, rows: undefined }).success).toBe(false);
    expect(v.safeParse(PlanSchema, { ...torus, extra: 2 }).success).toBe(false);
  });

  it("a groups plan: a grid of at least two dimensions in mixed-radix order, then at most one attached member per dimension-0 group", () => {
    const members = Array.from({ length: 11 }, (_, k) => `m${k}`);
    const plan = v.parse(PlanSchema, { kind: "groups", members, dims: [2, 2, 2] });
    if (plan.kind !== "groups") throw new Error("not a groups plan");
    expect(planGrid(plan)).toEqual({ members: members.slice(0, 8), dims: [2, 2, 2], attached: members.slice(8), label: "groups" });
    expect(planGrid({ kind: "torus", members: members.slice(0, 7), columns: 3, rows: 2 })).toEqual({ members: members.slice(0, 6), dims: [3, 2], attached: [members[6]], label: "torus" });
    const groups = { kind: "groups", members: members.slice(0, 8), dims: [2, 2, 2] };
    expect(v.safeParse(PlanSchema, groups).success).toBe(true);
    expect(v.safeParse(PlanSchema, { ...groups, dims: [2, 2, 3] }).issues?.[0]?.message).toMatch(/needs that many members/);
    expect(v.safeParse(PlanSchema, { ...groups, members, dims: [4, 2] }).issues?.[0]?.message).toMatch(/at most one member per dimension-0 group/);
    expect(v.safeParse(PlanSchema, { ...groups, members: [...members.slice(0, 7), "m0"] }).issues?.[0]?.message).toMatch(/each member once/);
    for (const dims of [[8], [], [2, 0, 4], [2, 2.5], [2, -2], ["2", 4], Array.from({ length: 13 }, () => 1), [65, 1]]) expect(v.safeParse(PlanSchema, { ...groups, dims }).success, JSON.stringify(dims)).toBe(false);
    expect(v.safeParse(PlanSchema, { ...groups, extra: 2 }).success).toBe(false);
  });

  it("grid stages: dimensions 0 and 1 are the torus's row and column, deeper ones stages 4 and up; a frame carries each", () => {
    expect([0, 1, 2, 11].map(gridStage)).toEqual([RingStage.TorusRow, RingStage.TorusColumn, 4, 13]);
    for (const dim of [0, 1, 2, 11]) expect(gridDimOf(gridStage(dim))).toBe(dim);
    expect(gridDimOf(RingStage.Ring)).toBeUndefined();
    expect(gridDimOf(RingStage.TorusAttach)).toBeUndefined();
    expect(() => gridStage(12)).toThrow(RangeError);
    const frame = decodeFrame(encodeDataFrame({ kind: FrameKind.AllGather, attempt: 3, step: 1, segment: 2, offset: 0, stage: gridStage(5) }, new Float32Array(2)));
    expect(frame.kind === FrameKind.AllGather && frame.stage).toBe(7);
    const bad = encodeDataFrame({ kind: FrameKind.AllGather, attempt: 3, step: 1, segment: 2, offset: 0, stage: gridStage(11) }, new Float32Array(2));
    bad[17] = 14;
    expect(() => decodeFrame(bad)).toThrow(/unknown stage 14/);
  });
});
