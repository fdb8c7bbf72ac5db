import type { Codec } from "@crowdtrain/protocol";

/** A chunk's values, or why its bytes are not a valid encoding (a bad frame, named by the caller). */
export type Decoded = { values: Float32Array } | { problem: string };

/**
 * Worst case of |decode(encode(chunk))[e] − chunk[e]| for one element x of a chunk whose largest
 * magnitude is maxAbs: relative·|x| + ofMax·maxAbs + absolute. Kept as coefficients so the ring's
 * bound over N re-encodings (index.ts) can be derived from them.
 */
export type ErrorBound = { relative: number; ofMax: number; absolute: number };

/** A codec of the summing ring: a chunk of float32 values to bytes and back, pure and deterministic. */
export interface ChunkCodec {
  readonly name: Exclude<Codec, "topk">;
  /** Bytes of the encoding of `elements` values (0 for none). */
  encodedBytes(elements: number): number;
  /** Encodes finite values. The bytes may be a view of `values` (dense); copy them before `values` changes. */
  encode(values: Float32Array): Uint8Array;
  /** Decodes exactly `elements` values from bytes of exactly encodedBytes(elements); checks the codec's own fields. */
  decode(bytes: Uint8Array, elements: number): Decoded;
  readonly bound: ErrorBound;
}

/** Unit roundoff of float32. */
export const FLOAT32_U = 2 ** -24;
/** Largest rounding error of a float32 result in the subnormal range (half the smallest subnormal). */
export const FLOAT32_SUBNORMAL_HALF_ULP = 2 ** -150;

/** The bound of `codec` for one element. */
export function elementBound(bound: ErrorBound, x: number, maxAbs: number): number {
  return bound.relative * Math.abs(x) + bound.ofMax * maxAbs + bound.absolute;
}

/** Little-endian byte access at any alignment (payloads are views into received frames). */
export function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** max |values[k]| (0 for none). */
export function maxAbs(values: Float32Array): number {
  let max = 0;
  for (let k = 0; k < values.length; k++) max = Math.max(max, Math.abs(values[k] as number));
  return max;
}
