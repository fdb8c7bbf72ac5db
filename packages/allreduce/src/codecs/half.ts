import { float32Bits, pow2 } from "./bits.ts";

/**
 * IEEE 754 binary16 ("half") conversions, by hand: the package has no DOM or Node APIs, and
 * Math.f16round is too new to rely on. Round to nearest, ties to even. Pure and exact: the same
 * input gives the same bits on every engine.
 */

/** Largest finite half, 2^15·(2 − 2^-10). */
export const HALF_MAX = 65504;
export const HALF_INFINITY_BITS = 0x7c00;

/**
 * The bits of the half nearest to x·2^-shift, x a finite float32 value and shift an integer (the
 * scaling is exact: it only moves the exponent). Values that round beyond HALF_MAX throw a
 * RangeError instead of becoming Infinity: fp16.ts scales every chunk so it never happens, and if it
 * did that would be a bug to see, not data to send.
 */
export function toHalfBits(x: number, shift = 0): number {
  const bits = float32Bits(x);
  const sign = (bits >>> 16) & 0x8000;
  const field = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (field === 0xff) throw refusal(x, shift, "not finite");
  if (field === 0 && mantissa === 0) return sign;
  // |x|·2^-shift = significand · 2^power exactly, with the significand normalised to 24 bits.
  let significand = field === 0 ? mantissa : mantissa | 0x800000;
  let power = (field === 0 ? -149 : field - 150) - shift;
  while (significand < 0x800000) {
    significand *= 2;
    power--;
  }
  const exponent = power + 23; // 2^exponent ≤ |value| < 2^(exponent+1)
  if (exponent >= -14) {
    // Normal half: keep 11 significant bits, drop 13.
    let kept = roundShift(significand, 13);
    let halfExponent = exponent;
    if (kept === 2048) {
      kept = 1024;
      halfExponent++;
    }
    if (halfExponent > 15) throw refusal(x, shift, `beyond ±${HALF_MAX}`);
    return sign | ((halfExponent + 15) << 10) | (kept - 1024);
  }
  // Subnormal half: value = m · 2^-24, so drop the bits below 2^-24. A result of 1024 is the smallest
  // normal half, whose bits are exactly 1024: no special case.
  return sign | roundShift(significand, -24 - power);
}

/**
 * The error toHalfBits throws, built out of line: a template literal thrown inside the per-element
 * conversion made V8 run it some 50 times slower.
 */
function refusal(x: number, shift: number, why: string): RangeError {
  return new RangeError(`cannot convert ${x}·2^${-shift} to half: ${why}`);
}

/** 2^(field − 25) for each exponent field of a half (field 0: the subnormal unit 2^-24). */
const HALF_UNIT = Float64Array.from({ length: 32 }, (_, field) => pow2(field === 0 ? -24 : field - 25));

/**
 * The value of half `bits` times `scale` (a power of two, so the product is exact in float64; the
 * caller rounds it to float32). NaN/±Infinity for those halves.
 */
export function fromHalfBits(bits: number, scale = 1): number {
  const negative = (bits & 0x8000) !== 0;
  const field = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (field === 0x1f) return mantissa === 0 ? (negative ? -Infinity : Infinity) : Number.NaN;
  const magnitude = (field === 0 ? mantissa : 1024 + mantissa) * (HALF_UNIT[field] as number) * scale;
  return negative ? -magnitude : magnitude;
}

/** Whether half `bits` is ±Infinity or NaN. */
export function isHalfNonFinite(bits: number): boolean {
  return (bits & HALF_INFINITY_BITS) === HALF_INFINITY_BITS;
}

/** round(value / 2^drop) to the nearest integer, ties to even; value is an integer in [2^23, 2^24), drop ≥ 1. */
function roundShift(value: number, drop: number): number {
  if (drop > 25) return 0; // value / 2^drop < 2^-1: rounds to 0
  const kept = value >>> drop;
  const rest = value & ((1 << drop) - 1);
  const half = 1 << (drop - 1);
  return rest > half || (rest === half && (kept & 1) === 1) ? kept + 1 : kept;
}
