import type { Codec } from "@crowdtrain/protocol";
import { firstNonFinite } from "../reduce.ts";
import { dense } from "./dense.ts";
import { fp16 } from "./fp16.ts";
import { int8 } from "./int8.ts";
import { FLOAT32_U, viewOf, type ChunkCodec, type Decoded } from "./types.ts";

/**
 * How the summing ring (dense, fp16, int8) puts a chunk of its contribution vector
 * [samples·g_0 … samples·g_{L-1}, samples] on the wire.
 *
 * The weight element stays exact: the chunk holding the vector's last element (the sample count,
 * whose total divides the sums) carries the codec's encoding of the other elements followed by that
 * element as a little-endian float32, and a receiver checks it is a whole non-negative number. So the
 * total is the same exact count on every member whatever the codec. For dense the two layouts are the
 * same bytes, so dense frames are exactly what they were before codecs.
 */

export const CHUNK_CODECS: Readonly<Record<Exclude<Codec, "topk">, ChunkCodec>> = { dense, fp16, int8 };

const TAIL_BYTES = 4;

/** Payload bytes of a chunk of `elements` values, `withTail` if it holds the vector's last element. */
export function ringChunkBytes(codec: ChunkCodec, elements: number, withTail: boolean): number {
  return withTail && codec.name !== "dense" ? codec.encodedBytes(elements - 1) + TAIL_BYTES : codec.encodedBytes(elements);
}

/**
 * Elements per chunk so that any chunk, the one with the tail included, fits in `frameBytes`
 * of payload; 0 if even one element does not fit (the caller refuses such a frameBytes).
 */
export function ringChunkElements(codec: ChunkCodec, frameBytes: number): number {
  const fits = (elements: number): boolean => ringChunkBytes(codec, elements, false) <= frameBytes && ringChunkBytes(codec, elements, true) <= frameBytes;
  if (!fits(1)) return 0;
  // Sizes grow with the element count, and every element costs at least a byte: binary search.
  let [fitting, tooMany] = [1, frameBytes + 1];
  while (tooMany - fitting > 1) {
    const middle = Math.floor((fitting + tooMany) / 2);
    if (fits(middle)) fitting = middle;
    else tooMany = middle;
  }
  return fitting;
}

/** Encodes a chunk of finite values (its last one the sample count if `withTail`). */
export function encodeRingChunk(codec: ChunkCodec, values: Float32Array, withTail: boolean): Uint8Array {
  if (!withTail || codec.name === "dense") return codec.encode(values);
  const body = codec.encode(values.subarray(0, values.length - 1));
  const bytes = new Uint8Array(body.byteLength + TAIL_BYTES);
  bytes.set(body);
  viewOf(bytes).setFloat32(body.byteLength, values[values.length - 1] as number, true);
  return bytes;
}

/** Decodes a received chunk of `elements` values, refusing wrong sizes, non-finite values and a count that is not a whole number ≥ 0. */
export function decodeRingChunk(codec: ChunkCodec, bytes: Uint8Array, elements: number, withTail: boolean): Decoded {
  const expected = ringChunkBytes(codec, elements, withTail);
  if (bytes.byteLength !== expected) return { problem: `has ${bytes.byteLength} payload bytes, expected ${expected} (${elements} elements, ${codec.name})` };
  const split = withTail && codec.name !== "dense";
  const decoded = codec.decode(split ? bytes.subarray(0, expected - TAIL_BYTES) : bytes, split ? elements - 1 : elements);
  if ("problem" in decoded) return decoded;
  let values = decoded.values;
  if (split) {
    values = new Float32Array(elements);
    values.set(decoded.values);
    values[elements - 1] = viewOf(bytes).getFloat32(expected - TAIL_BYTES, true);
  }
  const bad = firstNonFinite(values);
  if (bad >= 0) return { problem: `non-finite value ${values[bad]} at element ${bad} of the chunk` };
  const count = values[elements - 1] as number;
  if (withTail && !(Number.isInteger(count) && count >= 0)) return { problem: `sample count ${count} is not a whole number >= 0` };
  return { values };
}

/**
 * Worst-case |ŝ − s| of one element of a segment's reduced sum, where s = Σ_k c_k is the exact sum of
 * the members' float32 contributions and ŝ what the ring computed (every member's result has these
 * same bits). `chunkMaxSum` = Σ_k max |c_k| over the element's chunk (bounds every partial sum).
 *
 * Along a segment's path the running sum is encoded N times (N−1 reduce-scatter hops, then the
 * owner's final encoding) and added to N−1 times. With the codec's per-encoding bound
 * a·|x| + b·M + d and one float32 rounding u per addition, each hop multiplies the bound on
 * (|partial| + error) by at most (1 + ε), ε = a + b + 2u, and adds 2d, so
 *   |ŝ − s| ≤ (S + 2N·d)·(1 + ε)^N − S,   S = chunkMaxSum.
 * For int8 (ε ≈ 1/254) that is about N·S/254: re-quantising at every hop is what int8 costs.
 */
export function ringSumErrorBound(codec: ChunkCodec, n: number, chunkMaxSum: number): number {
  const { relative, ofMax, absolute } = codec.bound;
  const epsilon = relative + ofMax + 2 * FLOAT32_U;
  let growth = 1;
  for (let k = 0; k < n; k++) growth *= 1 + epsilon;
  return (chunkMaxSum + 2 * n * absolute) * growth - chunkMaxSum;
}
