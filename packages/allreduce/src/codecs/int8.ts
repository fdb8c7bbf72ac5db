import { float32Bits, nextDownFloat32, nextUpFloat32 } from "./bits.ts";
import { FLOAT32_SUBNORMAL_HALF_ULP, FLOAT32_U, maxAbs, viewOf, type ChunkCodec, type Decoded } from "./types.ts";

/**
 * 8-bit integers with one float32 scale per chunk.
 *
 *   [float32 scale][int8 q] × elements, little-endian; value = fround(q · scale). No bytes for 0 elements.
 *
 * scale = M / 127 rounded to float32, up if nearest rounds it down (so M/scale ≤ 127 and no q is
 * clamped, subnormal scales of tiny chunks included), M the chunk's largest magnitude; q = x / scale
 * rounded to the nearest integer, ties away from zero. Where 127·scale would round to float32
 * Infinity (M within 2^-23 of float32's top) the scale steps one ulp down and q = 127 absorbs the
 * excess, which costs at most 2^-23·M.
 *
 * Bound, per element x of a chunk of largest magnitude M:
 *   |x̂ − x| ≤ (1 + 2^-20)·M/254 + 2^-24·|x| + 2^-149
 * (half a quantisation step, the step M/127 rounded up by at most a relative 2^-23 or, subnormal, by
 * 2^-149; q·scale rounded once to float32).
 * A received chunk is refused if its scale is NaN, ±Infinity or negative (sign bit set, −0
 * included), or a q is -128 (outside the symmetric range the encoder uses).
 */
export const int8: ChunkCodec = {
  name: "int8",
  encodedBytes: (elements) => (elements === 0 ? 0 : 4 + elements),
  encode(values) {
    const bytes = new Uint8Array(int8.encodedBytes(values.length));
    if (values.length === 0) return bytes;
    const view = viewOf(bytes);
    const max = maxAbs(values);
    let scale = Math.fround(max / 127);
    if (127 * scale < max) scale = nextUpFloat32(scale); // 127·scale is exact in float64 (31 bits)
    if (!Number.isFinite(Math.fround(127 * scale))) scale = nextDownFloat32(scale);
    view.setFloat32(0, scale, true);
    if (scale === 0) return bytes; // every value is ±0: q = 0
    for (let k = 0; k < values.length; k++) {
      const ratio = (values[k] as number) / scale;
      const q = Math.min(127, Math.round(Math.abs(ratio)));
      view.setInt8(4 + k, ratio < 0 ? -q : q);
    }
    return bytes;
  },
  decode(bytes, elements): Decoded {
    if (bytes.byteLength !== int8.encodedBytes(elements)) return { problem: `int8 chunk of ${bytes.byteLength} bytes for ${elements} elements` };
    const values = new Float32Array(elements);
    if (elements === 0) return { values };
    const view = viewOf(bytes);
    const scale = view.getFloat32(0, true);
    if (!Number.isFinite(scale) || float32Bits(scale) >>> 31 === 1) return { problem: `int8 chunk scale ${Object.is(scale, -0) ? "-0" : scale} is not a finite non-negative float32` };
    for (let k = 0; k < elements; k++) {
      const q = view.getInt8(4 + k);
      if (q === -128) return { problem: `int8 element ${k} is -128, outside [-127, 127]` };
      values[k] = q * scale; // exact in float64; the store rounds to float32 once
    }
    return { values };
  },
  bound: { relative: FLOAT32_U, ofMax: (1 + 2 ** -20) / 254, absolute: 2 * FLOAT32_SUBNORMAL_HALF_ULP },
};
