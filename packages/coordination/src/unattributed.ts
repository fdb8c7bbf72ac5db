/**
 * Failures a member reports without naming anyone it could be judged against (no suspect, itself,
 * a non-member, or a relayed code). Each aborts the attempt for everyone and no accusation follows,
 * so nothing weighed against the reporter: one member saying "failed" at every attempt stopped a job
 * for good (0 commits in 50 attempts). One such abort per `rounds` committed rounds is free; each
 * further one still aborts (the reporter has given up on the attempt) but strikes the reporter, so a
 * member doing it at every attempt is evicted after maxStrikes.
 */
export class UnattributedAborts {
  /** The committed round at each member's last unattributed abort. */
  private readonly last = new Map<string, number>();

  constructor(private readonly rounds: number) {
    if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`rounds must be a positive integer, got ${rounds}`);
  }

  /** Whether `peerId`'s unattributed report is free now, at `committedRound`; if so, it is counted. */
  take(peerId: string, committedRound: number): boolean {
    const last = this.last.get(peerId);
    if (last !== undefined && committedRound - last < this.rounds) return false;
    this.last.set(peerId, committedRound);
    return true;
  }

  forget(peerId: string): void {
    this.last.delete(peerId);
  }
}
