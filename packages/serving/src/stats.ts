import type { ServingWindow } from "@crowdtrain/protocol";

/** Nearest-rank percentile `p` (0..100) of ascending `sorted`; undefined when empty. */
export function percentile(sorted: readonly number[], p: number): number | undefined {
  if (sorted.length === 0) return undefined;
  // p * n first: (p / 100) * n is 55.00000000000001 for p = 55, n = 100, one rank too far.
  const rank = Math.ceil((p * sorted.length) / 100);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/**
 * The inference API's numbers in fixed windows (the dashboard's chart and the bench's rows):
 * arrivals, answers with their latency, errors. Pure: time comes in on each call. Keeps the last
 * `keep` closed windows and the latencies of the open one only, so memory is bounded.
 */
export class ServingStats {
  served = 0;
  errors = 0;
  private readonly closed: ServingWindow[] = [];
  private windowStart: number | undefined;
  private arrivals = 0;
  private errorsInWindow = 0;
  private latencies: number[] = [];
  /** The pool and queue at the last roll: what a window closed by a later event records. */
  private last = { poolSize: 0, queueDepth: 0 };

  constructor(
    readonly windowMs: number,
    private readonly keep: number,
  ) {
    if (!(windowMs > 0 && Number.isInteger(keep) && keep >= 1)) throw new RangeError("windowMs must be positive and keep a positive integer");
  }

  arrived(now: number): void {
    this.open(now);
    this.arrivals++;
  }

  answered(now: number, latencyMs: number): void {
    this.open(now);
    this.served++;
    this.latencies.push(latencyMs);
  }

  errored(now: number): void {
    this.open(now);
    this.errors++;
    this.errorsInWindow++;
  }

  /** Closes every window that ended by `now`, with the pool and queue as they are now. */
  roll(now: number, poolSize: number, queueDepth: number): void {
    this.last = { poolSize, queueDepth };
    this.open(now);
  }

  /** Closed windows, oldest first. */
  get windows(): readonly ServingWindow[] {
    return this.closed;
  }

  /** Starts the first window, and closes every window that ended by `now`: an event counts in its own. */
  private open(now: number): void {
    let start: number = (this.windowStart ??= now);
    const { poolSize, queueDepth } = this.last;
    while (now >= start + this.windowMs) {
      const end: number = start + this.windowMs;
      const seconds = this.windowMs / 1000;
      const sorted = this.latencies.sort((a, b) => a - b);
      const window: ServingWindow = {
        at: end,
        offeredRps: this.arrivals / seconds,
        servedRps: sorted.length / seconds,
        poolSize,
        queueDepth,
        errors: this.errorsInWindow,
      };
      const p50 = percentile(sorted, 50);
      if (p50 !== undefined) Object.assign(window, { p50Ms: p50, p95Ms: percentile(sorted, 95), p99Ms: percentile(sorted, 99) });
      this.closed.push(window);
      if (this.closed.length > this.keep) this.closed.shift();
      this.windowStart = start = end;
      this.arrivals = 0;
      this.errorsInWindow = 0;
      this.latencies = [];
    }
  }
}
