/**
 * Failures a member reports without naming anyone it could be judged against (no suspect, itself,
 * a non-member, or a relayed code). Each aborts the attempt for everyone and no accusation follows,
 * so nothing would ever weigh against the reporter: one member saying "failed" at every attempt
 * stopped a job for good (0 commits in 50 attempts). A member may abort this way once per `rounds`
 * committed rounds; later reports are not acted on, the attempt goes on, and if the reporter has
 * really stopped, its peers' own timeouts name it and the usual accusations and deadlines judge it.
 */
export class UnattributedAborts {
  /** The committed round at each member's last unattributed abort. */
  private readonly last = new Map<string, number>();

  constructor(private readonly rounds: number) {
    if (!(Number.isInteger(rounds) && rounds >= 1)) throw new RangeError(`rounds must be a positive integer, got ${rounds}`);
  }

  /** Whether `peerId`'s unattributed report may abort now, at `committedRound`; if so, it is counted. */
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
