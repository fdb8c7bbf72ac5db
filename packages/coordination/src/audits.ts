/**
 * Spot checks by replication, sampled: after a commit each member of the round is audited with
 * probability p. The member committed to a digest of its contribution before the all-reduce; asked
 * after the commit (so it cannot know in advance), it uploads the contribution and the server
 * recomputes the lease on its CPU backend and compares. This class owns which audits are pending,
 * their deadlines, and each member's last passed audit; the Coordinator decides what a failure costs.
 */
export type PendingAudit = {
  peerId: string;
  /** The committed round whose contribution is checked; it started from the state of round - 1. */
  round: number;
  attempt: number;
  lease: readonly number[];
  /** What the member committed to before the all-reduce (undefined: it committed to nothing). */
  digest: string | undefined;
  askedAt: number;
  /** When the server had the member's whole contribution: from then only the server's verdict settles it. */
  receivedAt?: number;
};

export type AuditCandidate = { peerId: string; lease: readonly number[]; digest: string | undefined };

export class Audits {
  private readonly pending = new Map<string, PendingAudit>();
  /** Each member's newest round whose audit passed: its contributions up to there are trusted. */
  private readonly lastPassed = new Map<string, number>();

  constructor(
    private readonly probability: number,
    /** Audits in flight at once; beyond it no new ones are drawn, so the server's CPU stays bounded. */
    private readonly maxPending: number,
    private readonly timeoutMs: number,
    private readonly random: () => number,
  ) {
    if (!(probability >= 0 && probability <= 1)) throw new RangeError(`audit probability must be in [0, 1], got ${probability}`);
  }

  /**
   * Draws this commit's audits: each candidate independently with the job's probability, then, when
   * more are drawn than `maxPending` leaves room for, a uniform choice among those drawn. (Taking
   * them in the plan's order let the first forty or so members of a large swarm take every slot, so
   * a member late in the order, a late joiner, was never checked.)
   */
  draw(candidates: readonly AuditCandidate[], round: number, attempt: number, now: number): PendingAudit[] {
    // Draw for everyone first, so whether one member is drawn never depends on the others (only
    // whether a drawn one gets a slot does, when slots are short).
    const winners = candidates.filter(() => this.random() < this.probability);
    const room = Math.max(0, this.maxPending - this.pending.size);
    // A partial Fisher–Yates shuffle: the first `room` places become a uniform choice of winners.
    if (winners.length > room) for (let k = 0; k < room; k++) {
      const pick = k + Math.floor(this.random() * (winners.length - k));
      [winners[k], winners[pick]] = [winners[pick]!, winners[k]!];
    }
    return winners.slice(0, room).map((candidate) => {
      const audit: PendingAudit = { ...candidate, round, attempt, askedAt: now };
      this.pending.set(key(candidate.peerId, round), audit);
      return audit;
    });
  }

  /** Whether any audit can ever be drawn (the job's probability is above 0). */
  get drawing(): boolean {
    return this.probability > 0;
  }

  /** The audit `peerId` may answer for `round` now, if any. */
  slot(peerId: string, round: number): PendingAudit | undefined {
    return this.pending.get(key(peerId, round));
  }

  /** The server holds the member's whole contribution for `round`'s audit: leaving no longer fails it. */
  receive(peerId: string, round: number, now: number): void {
    const audit = this.pending.get(key(peerId, round));
    if (audit !== undefined) audit.receivedAt ??= now;
  }

  /** The server's verdict arrived: the audit is no longer pending. A pass extends the member's trust. */
  settle(peerId: string, round: number, passed: boolean): PendingAudit | undefined {
    const audit = this.pending.get(key(peerId, round));
    if (audit === undefined) return undefined;
    this.pending.delete(key(peerId, round));
    if (passed) this.lastPassed.set(peerId, Math.max(this.lastPassed.get(peerId) ?? -1, round));
    return audit;
  }

  /**
   * Audits unanswered past their deadline, removed. One the server holds the contribution of does
   * not expire: the server always gives its verdict (inconclusive if it cannot judge), and judging
   * is its own work, not the member's.
   */
  expire(now: number): PendingAudit[] {
    const expired: PendingAudit[] = [];
    for (const [k, audit] of this.pending) {
      if (audit.receivedAt !== undefined || now - audit.askedAt <= this.timeoutMs) continue;
      this.pending.delete(k);
      expired.push(audit);
    }
    return expired;
  }

  /**
   * A member left: the audits it never answered fail now (removed and returned); one whose
   * contribution the server already holds stays pending for the server's verdict. Its last pass is
   * kept for either to roll back to; forget() drops it once nothing of it is pending.
   */
  abandon(peerId: string): PendingAudit[] {
    const abandoned = [...this.pending.values()].filter((a) => a.peerId === peerId && a.receivedAt === undefined);
    for (const audit of abandoned) this.pending.delete(key(peerId, audit.round));
    return abandoned;
  }

  /** Whether any audit of `peerId` is still pending. */
  pendingFor(peerId: string): boolean {
    for (const audit of this.pending.values()) if (audit.peerId === peerId) return true;
    return false;
  }

  /** Rolled back past `round`: audits of later rounds check work that is no longer in the model. Returns whose were dropped. */
  dropAfter(round: number): Set<string> {
    const dropped = new Set<string>();
    for (const [k, audit] of this.pending) {
      if (audit.round <= round) continue;
      this.pending.delete(k);
      dropped.add(audit.peerId);
    }
    return dropped;
  }

  /** The member's newest audited-and-passed round, or -1. */
  trustedThrough(peerId: string): number {
    return this.lastPassed.get(peerId) ?? -1;
  }

  forget(peerId: string): void {
    this.lastPassed.delete(peerId);
  }

  get size(): number {
    return this.pending.size;
  }

  nextExpiryAt(): number | undefined {
    let earliest: number | undefined;
    for (const audit of this.pending.values()) if (audit.receivedAt === undefined) earliest = Math.min(earliest ?? Infinity, audit.askedAt + this.timeoutMs + 1);
    return earliest;
  }
}

function key(peerId: string, round: number): string {
  return `${round}:${peerId}`;
}
