/** Seeded sample orders: the same (seed, epoch) gives the same order on any machine. */

/** Mulberry32: 32-bit state, integer-only arithmetic, identical on every JS engine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates shuffle of 0..count-1 for one epoch. */
export function epochOrder(count: number, seed: number, epoch: number): number[] {
  const random = mulberry32((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
  const order = Array.from({ length: count }, (_, k) => k);
  for (let k = count - 1; k > 0; k--) {
    const j = Math.floor(random() * (k + 1));
    const tmp = order[k] as number;
    order[k] = order[j] as number;
    order[j] = tmp;
  }
  return order;
}
