/**
 * A deterministic Float32 pattern from a seed (xorshift32), so sender and receiver agree on every
 * byte without sending a reference copy. Values are 24-bit fractions in [-1, 1): exact in float32,
 * never NaN, so a byte-wise comparison is also a value-wise one.
 */
export function fillPattern(values: Float32Array, seed: number): Float32Array {
  // xorshift32 must not start at 0; mixing with a constant keeps seed 0 usable.
  let x = (seed ^ 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < values.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    values[i] = (x >>> 8) / 8_388_608 - 1;
  }
  return values;
}

export function patternBytes(bytes: number, seed: number): Uint8Array {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes % 4 !== 0) {
    throw new RangeError(`pattern size must be a non-negative multiple of 4 bytes, got ${bytes}`);
  }
  return new Uint8Array(fillPattern(new Float32Array(bytes / 4), seed).buffer);
}

/** Index of the first differing byte, or null when equal. */
export function firstMismatch(actual: Uint8Array, expected: Uint8Array): number | null {
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) if (actual[i] !== expected[i]) return i;
  return actual.length === expected.length ? null : n;
}
