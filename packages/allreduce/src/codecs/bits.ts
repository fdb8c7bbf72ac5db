/**
 * Exact bit-level views of numbers, for the codecs. float32 <-> uint32 goes through two typed arrays
 * over one 4-byte buffer (the per-element hot path): both use the platform's byte order, so the bits
 * are right on any platform. Wider layouts use a DataView with explicit endianness.
 */
const float32Scratch = new Float32Array(1);
const uint32Scratch = new Uint32Array(float32Scratch.buffer);
const scratch = new DataView(new ArrayBuffer(8));

/** The IEEE bits of `x` rounded to float32 (x is normally a float32 value already). */
export function float32Bits(x: number): number {
  float32Scratch[0] = x;
  return uint32Scratch[0] as number;
}

/** The float32 whose bits are `bits`. */
export function float32FromBits(bits: number): number {
  uint32Scratch[0] = bits >>> 0;
  return float32Scratch[0] as number;
}

/**
 * 2^k exactly, for an integer k in [-1022, 1023] (a normal float64), built from its bits: `2 ** k`
 * is not specified to be correctly rounded, and results here must be the same on every engine.
 */
export function pow2(k: number): number {
  if (!Number.isInteger(k) || k < -1022 || k > 1023) throw new RangeError(`pow2 needs an integer in [-1022, 1023], got ${k}`);
  scratch.setUint32(0, (k + 1023) * 0x100000);
  scratch.setUint32(4, 0);
  return scratch.getFloat64(0);
}

/**
 * The unbiased binary exponent of a finite non-zero float32 value: 2^e ≤ |x| < 2^(e+1). Read from
 * the bits (subnormals included), because Math.log2 is not correctly rounded near powers of two.
 */
export function float32Exponent(x: number): number {
  const bits = float32Bits(x);
  const field = (bits >>> 23) & 0xff;
  if (field === 0xff || (bits & 0x7fffffff) === 0) throw new RangeError(`float32Exponent needs a finite non-zero value, got ${x}`);
  if (field > 0) return field - 127;
  // Subnormal: value = mantissa · 2^-149; its exponent is that of the mantissa's top bit.
  return 31 - Math.clz32(bits & 0x7fffff) - 149;
}

/** The largest float32 below `x` (x a positive finite float32): one unit in the last place down. */
export function nextDownFloat32(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) throw new RangeError(`nextDownFloat32 needs a positive finite value, got ${x}`);
  return float32FromBits(float32Bits(x) - 1);
}

/** The smallest float32 above `x` (x a non-negative finite float32; +0 gives the smallest subnormal). */
export function nextUpFloat32(x: number): number {
  if (!(x >= 0) || !Number.isFinite(x)) throw new RangeError(`nextUpFloat32 needs a non-negative finite value, got ${x}`);
  return float32FromBits(float32Bits(x) + 1);
}
