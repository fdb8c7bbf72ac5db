import { float32Exponent, pow2 } from "./bits.ts";
import { fromHalfBits, isHalfNonFinite, toHalfBits } from "./half.ts";
import { FLOAT32_SUBNORMAL_HALF_ULP, maxAbs, viewOf, type ChunkCodec, type Decoded } from "./types.ts";

/**
 * IEEE half precision with a power-of-two scale per chunk.
 *
 *   [int16 shift][uint16 half] × elements, little-endian; value = half · 2^shift. No bytes for 0 elements.
 *
 * Why the scale: ring chunks carry sample-weighted sums (samples·g, summed over members), which
 * leave the half range (±65504) as soon as samples·|g| does, and plain halves would then have to be
 * clamped (unbounded error) or refused (a failed round with nobody to blame). The encoder picks
 * shift = e − 14, e the binary exponent of the chunk's largest magnitude M, so every scaled value lies
 * below 2^15 and no half can overflow; scaling by a power of two is exact, so each element is rounded
 * once, to nearest-even, as plain IEEE half would round it. The one clamp: a value within 2^-11 of
 * float32's top (≥ 2^128·(1 − 2^-12)) that rounds up to 2^15·2^113 = 2^128 (float32 Infinity) is
 * clamped to the largest half below, one half-ulp more error.
 *
 * Bound, per element x of a chunk of largest magnitude M:
 *   |x̂ − x| ≤ (2^-11 + 2^-22)·|x| + 2^-39·M + 2^-150
 * (nearest-even rounding to 11 significant bits, with the clamp's extra; halves below 2^-14 are
 * subnormal with spacing 2^-24·2^shift ≤ 2^-38·M; a decoded value below float32's normal range rounds
 * once more, by at most 2^-150).
 * A received chunk is refused if its shift is outside what an encoder can produce, or a half is
 * ±Infinity/NaN.
 */
const MIN_SHIFT = -149 - 14;
const MAX_SHIFT = 127 - 14;
/** Halves of magnitude 2^15 and the largest one below it. */
const HALF_TWO_POW_15 = 0x7800;
const HALF_BELOW_TWO_POW_15 = 0x77ff;

export const fp16: ChunkCodec = {
  name: "fp16",
  encodedBytes: (elements) => (elements === 0 ? 0 : 2 + 2 * elements),
  encode(values) {
    const bytes = new Uint8Array(fp16.encodedBytes(values.length));
    if (values.length === 0) return bytes;
    const view = viewOf(bytes);
    const max = maxAbs(values);
    const shift = max === 0 ? 0 : float32Exponent(max) - 14;
    view.setInt16(0, shift, true);
    for (let k = 0; k < values.length; k++) {
      let half = toHalfBits(values[k] as number, shift);
      if (shift === MAX_SHIFT && (half & 0x7fff) === HALF_TWO_POW_15) half = (half & 0x8000) | HALF_BELOW_TWO_POW_15;
      view.setUint16(2 + 2 * k, half, true);
    }
    return bytes;
  },
  decode(bytes, elements): Decoded {
    if (bytes.byteLength !== fp16.encodedBytes(elements)) return { problem: `fp16 chunk of ${bytes.byteLength} bytes for ${elements} elements` };
    const values = new Float32Array(elements);
    if (elements === 0) return { values };
    const view = viewOf(bytes);
    const shift = view.getInt16(0, true);
    if (shift < MIN_SHIFT || shift > MAX_SHIFT) return { problem: `fp16 chunk scale 2^${shift} is outside [2^${MIN_SHIFT}, 2^${MAX_SHIFT}]` };
    const scale = pow2(shift);
    for (let k = 0; k < elements; k++) {
      const half = view.getUint16(2 + 2 * k, true);
      if (isHalfNonFinite(half)) return { problem: `fp16 element ${k} is a half Infinity or NaN (bits 0x${half.toString(16)})` };
      values[k] = fromHalfBits(half, scale); // exact in float64; the store rounds to float32 once
    }
    return { values };
  },
  bound: { relative: 2 ** -11 + 2 ** -22, ofMax: 2 ** -39, absolute: FLOAT32_SUBNORMAL_HALF_ULP },
};
