/**
 * Error feedback for a lossy codec (topk): what a member did not send in one round is added to its
 * gradient in the next, so nothing is lost, only delayed (Stich et al. 2018, Karimireddy et al. 2019).
 *
 * Lifecycle, tied to the coordinator's attempts: before a round, `correct(gradient)` adds the
 * committed residual; the all-reduce returns the new residual (RoundResult.residual, gradient units),
 * which is `hold`-ed under the attempt; when the coordinator commits that attempt it is `commit`-ed
 * (it replaces the residual), and when the attempt is aborted it is `discard`-ed. An aborted attempt
 * therefore leaves the residual exactly as it was, and the retry corrects its gradient with the same
 * residual as the aborted try did. Pure: no timers, no I/O.
 */
export class ErrorFeedback {
  private committed: Float32Array;
  private readonly pending = new Map<number, Float32Array>();

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 0) throw new RangeError(`error feedback size must be a non-negative integer, got ${size}`);
    this.committed = new Float32Array(size);
  }

  /** gradient + committed residual, as a new array (float32 additions); the gradient is not modified. */
  correct(gradient: Float32Array): Float32Array {
    this.checkSize("gradient", gradient);
    const corrected = new Float32Array(this.size);
    for (let e = 0; e < this.size; e++) corrected[e] = (gradient[e] as number) + (this.committed[e] as number);
    return corrected;
  }

  /** Keeps `residual` (copied) as the residual of `attempt`, until that attempt is committed or discarded. */
  hold(attempt: number, residual: Float32Array): void {
    if (this.pending.has(attempt)) throw new Error(`error feedback already holds a residual for attempt ${attempt}`);
    this.checkSize("residual", residual);
    for (let e = 0; e < residual.length; e++) {
      if (!Number.isFinite(residual[e])) throw new RangeError(`residual of attempt ${attempt} has non-finite value ${residual[e]} at element ${e}`);
    }
    this.pending.set(attempt, residual.slice());
  }

  /**
   * The coordinator committed `attempt`: its residual becomes the committed one. Other pending
   * attempts were corrected with the residual this replaces, so they are dropped.
   */
  commit(attempt: number): void {
    const residual = this.pending.get(attempt);
    if (residual === undefined) {
      const held = [...this.pending.keys()];
      throw new Error(`cannot commit attempt ${attempt}: no residual is held for it (held: ${held.length === 0 ? "none" : held.join(", ")})`);
    }
    this.committed = residual;
    this.pending.clear();
  }

  /**
   * `attempt` was aborted: its residual is dropped and the committed one stays. Discarding an attempt
   * that holds nothing is allowed: an attempt can abort before its all-reduce returned a residual.
   */
  discard(attempt: number): void {
    this.pending.delete(attempt);
  }

  /** A copy of the committed residual. */
  residual(): Float32Array {
    return this.committed.slice();
  }

  /** Attempts holding a residual, in the order they were held. */
  pendingAttempts(): number[] {
    return [...this.pending.keys()];
  }

  private checkSize(what: string, values: Float32Array): void {
    if (values.length !== this.size) throw new RangeError(`${what} has ${values.length} elements, error feedback has ${this.size}`);
  }
}
