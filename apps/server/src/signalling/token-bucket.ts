/**
 * A token bucket: holds up to `burst` tokens, refilled at `ratePerSecond`; each use takes `cost`
 * tokens or is refused. Pure apart from the clock it is handed, so tests drive it with a fake one.
 */
export type TokenBucket = {
  /** Takes `cost` tokens at time `nowMs` (milliseconds, monotonic); false, taking none, when too few are left. */
  take(cost: number, nowMs: number): boolean;
};

export function createTokenBucket(ratePerSecond: number, burst: number, startMs: number): TokenBucket {
  if (!(ratePerSecond > 0) || !(burst > 0)) throw new RangeError(`token bucket needs a positive rate and burst, got ${ratePerSecond}/s burst ${burst}`);
  let tokens = burst;
  let lastMs = startMs;
  return {
    take(cost, nowMs) {
      // A clock that steps back (it should not: callers pass a monotonic one) refills nothing.
      tokens = Math.min(burst, tokens + (Math.max(0, nowMs - lastMs) * ratePerSecond) / 1000);
      lastMs = Math.max(lastMs, nowMs);
      if (tokens < cost) return false;
      tokens -= cost;
      return true;
    },
  };
}
