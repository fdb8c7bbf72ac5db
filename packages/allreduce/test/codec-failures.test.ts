import { encodeCodedFrame, encodeDataFrame, FrameKind, type Codec } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { AllReduceError, encodeRingChunk, encodeTopkChunk, fp16, int8, MAX_SAMPLES, type AllReduceOptions, type SparseBlock } from "../src/index.ts";
import { allReduceAll, closeAll, makeCluster } from "./harness.ts";

const FAST: Partial<AllReduceOptions> = { frameBytes: 64, progressTimeoutMs: 150, hopMs: 0, ringStartTimeoutMs: 150, roundTimeoutMs: 3_000 };

/**
 * A 3-ring of 100+1 elements; the target (position 1) is the only member running, so the forged
 * frames from its left neighbour are all it sees.
 * Summing codecs: it receives segment 2 (elements 68..100, the sample count last) at reduce-scatter
 * step 0; with 64-byte frames fp16 chunks hold 30 elements (offsets 0 and 30, the second with the
 * count), int8 chunks 57 (offset 0 only).
 * topk (fraction 0.1, so k = 10): it receives the left member's block (segment 0) at all-gather
 * step 0, 7 pairs a chunk: offset 0 (count + 7 pairs) and offset 7 (3 pairs).
 */
async function refusal(codec: Codec, frames: Uint8Array<ArrayBuffer>[]): Promise<AllReduceError> {
  const cluster = makeCluster(3, 100, 21, FAST);
  const [left, target] = [cluster.ring[0]!, cluster.ring[1]!];
  const pending = allReduceAll(cluster, 1, cluster.peers.filter((p) => p.id === target), cluster.ring, { codec, topkFraction: 0.1 });
  for (const bytes of frames) cluster.network.inject(left, target, bytes);
  const [outcome] = await pending;
  closeAll(cluster);
  expect(outcome!.status).toBe("rejected");
  const error = (outcome as PromiseRejectedResult).reason as AllReduceError;
  expect(error).toBeInstanceOf(AllReduceError);
  expect(error.code).toBe("bad-frame");
  expect(error.suspect).toBe(left);
  return error;
}

const rs = (codec: Codec, offset: number, payload: Uint8Array) => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 2, offset, codec }, payload);
const ag = (offset: number, payload: Uint8Array) => encodeCodedFrame({ kind: FrameKind.AllGather, attempt: 1, step: 0, segment: 0, offset, codec: "topk" }, payload);
const values = (length: number, last = 1): Float32Array => Float32Array.from({ length }, (_, k) => (k === length - 1 ? last : k - 5));
const fp16Chunk = (): Uint8Array => encodeRingChunk(fp16, values(30), false);
const int8Chunk = (count = 7): Uint8Array => encodeRingChunk(int8, values(33, count), true);
const patched = (bytes: Uint8Array, edit: (view: DataView) => void): Uint8Array => {
  const copy = bytes.slice();
  edit(new DataView(copy.buffer));
  return copy;
};
const withCodecByte = (frame: Uint8Array<ArrayBuffer>, codecByte: number): Uint8Array<ArrayBuffer> => {
  const copy = frame.slice();
  copy[16] = codecByte;
  return copy;
};
const block = (indices: number[], samples = 5): SparseBlock => ({ samples, indices: Uint32Array.from(indices), values: Float32Array.from(indices, (i) => i / 10) });
const GOOD = [3, 8, 11, 20, 21, 40, 41, 50, 60, 99];

describe("compressed frames that are refused with bad-frame naming the sender", () => {
  const cases: { name: string; codec: Codec; frames: () => Uint8Array<ArrayBuffer>[]; pattern: RegExp }[] = [
    { name: "an unknown codec byte", codec: "fp16", frames: () => [withCodecByte(rs("fp16", 0, fp16Chunk()), 9)], pattern: /undecodable frame: .*unknown codec 9/ },
    { name: "no codec byte (0)", codec: "int8", frames: () => [withCodecByte(rs("int8", 0, int8Chunk()), 0)], pattern: /unknown codec 0/ },
    { name: "a codec other than the round's (int8 in an fp16 round)", codec: "fp16", frames: () => [rs("int8", 0, int8Chunk())], pattern: /int8 frame in a fp16 round/ },
    { name: "a dense frame in a topk round", codec: "topk", frames: () => [encodeDataFrame({ kind: FrameKind.AllGather, attempt: 1, step: 0, segment: 0, offset: 0 }, new Float32Array(4))], pattern: /dense frame in a topk round/ },
    { name: "a topk frame in a dense round", codec: "dense", frames: () => [encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 2, offset: 0, codec: "topk" }, new Uint8Array(8))], pattern: /topk frame in a dense round/ },
    { name: "a truncated fp16 payload", codec: "fp16", frames: () => [rs("fp16", 0, fp16Chunk().subarray(0, 61))], pattern: /has 61 payload bytes, expected 62 \(30 elements, fp16\)/ },
    { name: "a truncated int8 payload", codec: "int8", frames: () => [rs("int8", 0, int8Chunk().subarray(0, 39))], pattern: /has 39 payload bytes, expected 40 \(33 elements, int8\)/ },
    { name: "an fp16 half Infinity", codec: "fp16", frames: () => [rs("fp16", 0, patched(fp16Chunk(), (v) => v.setUint16(2 + 2 * 4, 0x7c00, true)))], pattern: /element 4 is a half Infinity or NaN/ },
    { name: "an fp16 scale no encoder makes", codec: "fp16", frames: () => [rs("fp16", 0, patched(fp16Chunk(), (v) => v.setInt16(0, 500, true)))], pattern: /scale 2\^500 is outside/ },
    { name: "an int8 scale of NaN", codec: "int8", frames: () => [rs("int8", 0, patched(int8Chunk(), (v) => v.setFloat32(0, Number.NaN, true)))], pattern: /scale NaN is not a finite non-negative float32/ },
    { name: "an int8 scale of Infinity", codec: "int8", frames: () => [rs("int8", 0, patched(int8Chunk(), (v) => v.setFloat32(0, Infinity, true)))], pattern: /scale Infinity is not/ },
    { name: "a negative int8 scale", codec: "int8", frames: () => [rs("int8", 0, patched(int8Chunk(), (v) => v.setFloat32(0, -2, true)))], pattern: /scale -2 is not/ },
    { name: "an int8 scale that overflows the decoded values", codec: "int8", frames: () => [rs("int8", 0, patched(int8Chunk(), (v) => v.setFloat32(0, 3e38, true)))], pattern: /non-finite value -Infinity at element 0/ },
    { name: "a fractional sample count", codec: "int8", frames: () => [rs("int8", 0, int8Chunk(2.5))], pattern: /sample count 2.5 is not a whole number/ },
    { name: "a negative sample count", codec: "fp16", frames: () => [rs("fp16", 30, encodeRingChunk(fp16, values(3, -4), true))], pattern: /sample count -4/ },
    { name: "a topk index out of range", codec: "topk", frames: () => [ag(0, encodeTopkChunk(block([...GOOD.slice(0, 6), 100, 101, 102, 103]), 0, 7))], pattern: /index 100 of pair 6 is out of range for 100 elements/ },
    { name: "topk indices not increasing in a chunk", codec: "topk", frames: () => [ag(0, encodeTopkChunk(block([3, 8, 8, 20, 21, 40, 41, 50, 60, 99]), 0, 7))], pattern: /index 8 of pair 2 does not increase/ },
    { name: "topk indices not increasing across chunks (later chunk first)", codec: "topk", frames: () => [ag(7, encodeTopkChunk(block([...GOOD.slice(0, 7), 30, 60, 99]), 1, 7)), ag(0, encodeTopkChunk(block(GOOD), 0, 7))], pattern: /index 41 at pair 6 does not increase \(next chunk starts at 30\)/ },
    { name: "topk indices not increasing across chunks (first chunk first)", codec: "topk", frames: () => [ag(0, encodeTopkChunk(block(GOOD), 0, 7)), ag(7, encodeTopkChunk(block([...GOOD.slice(0, 7), 41, 60, 99]), 1, 7))], pattern: /index 41 at pair 7 does not increase \(previous chunk ends at 41\)/ },
    { name: "a topk non-finite value", codec: "topk", frames: () => [ag(0, patched(encodeTopkChunk(block(GOOD), 0, 7), (v) => v.setFloat32(4 + 8 * 2 + 4, Number.NaN, true)))], pattern: /non-finite value NaN at index 11/ },
    { name: "a topk sample count beyond MAX_SAMPLES", codec: "topk", frames: () => [ag(0, encodeTopkChunk(block(GOOD, MAX_SAMPLES + 1), 0, 7))], pattern: /sample count 16777217 exceeds 16777216/ },
    { name: "a truncated topk chunk", codec: "topk", frames: () => [ag(7, encodeTopkChunk(block(GOOD), 1, 7).subarray(0, 20))], pattern: /has 20 payload bytes, expected 24 \(3 pairs, topk\)/ },
    { name: "a reduce-scatter frame in a topk round", codec: "topk", frames: () => [encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 2, offset: 0, codec: "topk" }, new Uint8Array(8))], pattern: /this topk ring has no reduce-scatter phase/ },
    { name: "a topk offset that is not a chunk start", codec: "topk", frames: () => [ag(3, encodeTopkChunk(block(GOOD), 1, 7))], pattern: /offset 3 is not a chunk start inside segment 0 \(2 chunks of 7\)/ },
  ];
  for (const { name, codec, frames, pattern } of cases) {
    it(`${codec}: ${name}`, async () => {
      const error = await refusal(codec, frames());
      expect(error.message).toMatch(pattern);
    });
  }

  it("a genuine-looking compressed chunk is accepted (the forgeries above fail for their defect alone)", async () => {
    for (const [codec, frame] of [["fp16", rs("fp16", 0, fp16Chunk())], ["int8", rs("int8", 0, int8Chunk())], ["topk", ag(0, encodeTopkChunk(block(GOOD), 0, 7))]] as const) {
      const cluster = makeCluster(3, 100, 21, FAST);
      const [left, target] = [cluster.ring[0]!, cluster.ring[1]!];
      const pending = allReduceAll(cluster, 1, cluster.peers.filter((p) => p.id === target), cluster.ring, { codec, topkFraction: 0.1 });
      cluster.network.inject(left, target, frame);
      await cluster.network.flush();
      const reducer = cluster.peers.find((p) => p.id === target)!.reducer;
      expect(reducer.counters().lastViolation).toBeUndefined();
      reducer.abortRound(1, "test done");
      const [outcome] = await pending;
      expect(((outcome as PromiseRejectedResult).reason as AllReduceError).code).toBe("aborted");
      closeAll(cluster);
    }
  });
});
