/**
 * A serving tab's batching, pure: requests queue until they fill a batch of `maxBatch` rows or the
 * oldest has waited `maxWaitMs`, whichever is first. One predict call over many rows costs barely
 * more than over one on a GPU, so under load this multiplies a tab's throughput; at low load a
 * request waits at most `maxWaitMs`. A request is never split across batches.
 */
export type Batchable = { id: number; rows: number };

export class Batcher<R extends Batchable> {
  private readonly waiting: { request: R; at: number }[] = [];
  private rows = 0;

  constructor(
    readonly maxBatch: number,
    readonly maxWaitMs: number,
  ) {
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new RangeError(`maxBatch must be a positive integer, got ${maxBatch}`);
    if (!(maxWaitMs >= 0)) throw new RangeError(`maxWaitMs must be at least 0, got ${maxWaitMs}`);
  }

  get size(): number {
    return this.waiting.length;
  }

  add(request: R, now: number): void {
    this.waiting.push({ request, at: now });
    this.rows += request.rows;
  }

  /** When the waiting requests are due even without a full batch (undefined: none waiting). */
  dueAt(): number | undefined {
    const first = this.waiting[0];
    return first === undefined ? undefined : first.at + this.maxWaitMs;
  }

  /**
   * The next batch if one is due at `now`: requests in arrival order up to `maxBatch` rows (at least
   * one request, however large); empty when none is due.
   */
  take(now: number): R[] {
    const due = this.dueAt();
    if (due === undefined || (this.rows < this.maxBatch && now < due)) return [];
    const batch: R[] = [];
    let rows = 0;
    while (this.waiting.length > 0) {
      const next = this.waiting[0] as { request: R; at: number };
      if (batch.length > 0 && rows + next.request.rows > this.maxBatch) break;
      this.waiting.shift();
      rows += next.request.rows;
      batch.push(next.request);
    }
    this.rows -= rows;
    return batch;
  }

  /** Every waiting request, removed (the tab stops serving: the server retries them elsewhere). */
  clear(): R[] {
    const all = this.waiting.map((w) => w.request);
    this.waiting.length = 0;
    this.rows = 0;
    return all;
  }
}
