import * as tf from "@tensorflow/tfjs";
import { mulberry32Uint32 } from "@crowdtrain/protocol";

/** Seeded uniform values in [lo, hi): tests must not depend on Math.random. */
export function seededFloats(count: number, seed: number, lo = -1, hi = 1): Float32Array {
  const next = mulberry32Uint32(seed);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = lo + ((hi - lo) * next()) / 2 ** 32;
  return out;
}

export async function useCpu(): Promise<void> {
  await tf.setBackend("cpu");
  await tf.ready();
}
