/**
 * At most `limit` events per key within a sliding `windowMs` (counted in fixed windows, which is
 * enough to stop a flood and costs O(1) per event). Keys are dropped once their window ended, so
 * many distinct addresses cost memory only while they are active.
 */
export class RateLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {
    if (!(limit >= 1 && windowMs > 0)) throw new RangeError(`rate limit needs limit >= 1 and a positive window, got ${limit} per ${windowMs} ms`);
  }

  /** Counts one event for `key`; false when it is over the limit. */
  take(key: string): boolean {
    const now = this.now();
    const window = this.windows.get(key);
    if (window === undefined || now - window.start >= this.windowMs) {
      this.windows.set(key, { start: now, count: 1 });
      return true;
    }
    window.count++;
    return window.count <= this.limit;
  }

  /** Forgets keys whose window ended. */
  prune(): void {
    const now = this.now();
    for (const [key, window] of this.windows) if (now - window.start >= this.windowMs) this.windows.delete(key);
  }
}
