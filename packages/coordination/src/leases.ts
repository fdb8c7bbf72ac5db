/**
 * Splits a batch of sample indices among ring members in proportion to their measured speed
 * (samples per second), so a slow laptop gets less work and nobody waits long for it. Members
 * without a measurement yet (joiners) count as the slowest measured member (or all equal when
 * nobody is measured): every member waits for the slowest, so a newcomer given the median's share
 * that turns out slow holds the whole round up (a volunteer 5x slower, a fifth of the round's
 * members' time each), while one given too little only idles for one round, after which it is
 * measured. Every member gets at least one sample when the batch allows it. Pure and
 * deterministic: largest remainders win, ties go to ring order.
 */
export function splitBatch(batch: readonly number[], ring: readonly string[], speed: (peer: string) => number | undefined): Map<string, number[]> {
  const known = ring.map(speed).filter((s): s is number => s !== undefined && s > 0);
  const fallback = known.length === 0 ? 1 : Math.min(...known);
  const weights = ring.map((peer) => {
    const s = speed(peer);
    return s !== undefined && s > 0 ? s : fallback;
  });
  const counts = apportion(batch.length, weights);
  const leases = new Map<string, number[]>();
  let next = 0;
  ring.forEach((peer, k) => {
    const count = counts[k] as number;
    leases.set(peer, batch.slice(next, next + count));
    next += count;
  });
  return leases;
}

/** Integer counts summing to `total`, proportional to `weights`, each >= 1 while total allows. */
export function apportion(total: number, weights: readonly number[]): number[] {
  const n = weights.length;
  if (n === 0) return [];
  const floor = total >= n ? 1 : 0;
  const rest = total - floor * n;
  const sum = weights.reduce((a, b) => a + b, 0);
  const exact = weights.map((w) => (rest * w) / sum);
  const counts = exact.map((x) => floor + Math.floor(x));
  let left = total - counts.reduce((a, b) => a + b, 0);
  const order = exact.map((x, k) => ({ k, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac || a.k - b.k);
  for (const { k } of order) {
    if (left === 0) break;
    counts[k] = (counts[k] as number) + 1;
    left--;
  }
  return counts;
}
