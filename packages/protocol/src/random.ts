/**
 * The project's one seeded generator: Mulberry32 (32-bit state, integer-only arithmetic), so the
 * same seed gives the same draws on every JS engine. The coordinator's epoch orders, the MNIST
 * build's shuffle (hence the dataset's bytes) and the seeded tests all depend on its exact bits:
 * changing one operation here changes the sample orders of running jobs and every built dataset.
 */

/** Uniform unsigned 32-bit integers. */
export function mulberry32Uint32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * Uniform floats in [0, 1): each an integer draw divided by 2^32, which is exact, so
 * `Math.floor(random() * n)` is the exact integer draw `floor(u * n / 2^32)` for any n up to 2^21.
 */
export function mulberry32(seed: number): () => number {
  const next = mulberry32Uint32(seed);
  return () => next() / 2 ** 32;
}
