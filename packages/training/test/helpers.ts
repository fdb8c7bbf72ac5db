import * as tf from "@tensorflow/tfjs";

/** Seeded uniform values in [lo, hi): tests must not depend on Math.random. */
export function seededFloats(count: number, seed: number, lo = -1, hi = 1): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = lo + ((hi - lo) * ((t ^ (t >>> 14)) >>> 0)) / 2 ** 32;
  }
  return out;
}

export async function useCpu(): Promise<void> {
  await tf.setBackend("cpu");
  await tf.ready();
}
