/**
 * How often a tab may start over with a fresh trainer after its own failed (a GPU device lost, a
 * trainer worker that crashed, an update that diverged from the commit): at most `max` times within
 * any `windowMs`. A failure that recurs at once (a bug, a device that keeps failing) stops the tab
 * for good instead of rejoining the job in a loop. Pure: time comes in as `now`.
 */
export class RestartBudget {
  private readonly taken: number[] = [];

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {
    if (!(Number.isInteger(max) && max >= 0 && windowMs > 0)) throw new RangeError(`restart budget needs a whole max >= 0 and a positive window, got ${max} per ${windowMs} ms`);
  }

  /** Takes one restart at `now` if the window has room; false when the budget is spent. */
  take(now: number): boolean {
    while (this.taken.length > 0 && (this.taken[0] as number) <= now - this.windowMs) this.taken.shift();
    if (this.taken.length >= this.max) return false;
    this.taken.push(now);
    return true;
  }
}
