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

  /** Draws this commit's audits: each candidate independently with the job's probability. */
  draw(candidates: readonly AuditCandidate[], round: number, attempt: number, now: number): PendingAudit[] {
    const drawn: PendingAudit[] = [];
    for (const candidate of candidates) {
      // Draw for everyone first, so whether one member is audited never depends on the others.
      if (!(this.random() < this.probability) || this.pending.size >= this.maxPending) continue;
      const audit: PendingAudit = { ...candidate, round, attempt, askedAt: now };
      this.pending.set(key(candidate.peerId, round), audit);
      drawn.push(audit);
    }
    return drawn;
  }

  /** The audit `peerId` may answer for `round` now, if any. */
  slot(peerId: string, round: number): PendingAudit | undefined {
    return this.pending.get(key(peerId, round));
  }

  /** The server's verdict arrived: the audit is no longer pending. A pass extends the member's trust. */
  settle(peerId: string, round: number, passed: boolean): PendingAudit | undefined {
    const audit = this.pending.get(key(peerId, round));
    if (audit === undefined) return undefined;
    this.pending.delete(key(peerId, round));
    if (passed) this.lastPassed.set(peerId, Math.max(this.lastPassed.get(peerId) ?? -1, round));
    return audit;
  }

  /** Audits unanswered past their deadline, removed. */
  expire(now: number): PendingAudit[] {
    const expired: PendingAudit[] = [];
    for (const [k, audit] of this.pending) {
      if (now - audit.askedAt <= this.timeoutMs) continue;
      this.pending.delete(k);
      expired.push(audit);
    }
    return expired;
  }

  /** A member that leaves with audits pending never answers them: they fail now, removed. */
  abandon(peerId: string): PendingAudit[] {
    const abandoned = [...this.pending.values()].filter((a) => a.peerId === peerId);
    for (const audit of abandoned) this.pending.delete(key(peerId, audit.round));
    this.lastPassed.delete(peerId);
    return abandoned;
  }

  /** Rolled back past `round`: audits of later rounds check work that is no longer in the model. */
  dropAfter(round: number): void {
    for (const [k, audit] of this.pending) if (audit.round > round) this.pending.delete(k);
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
    for (const audit of this.pending.values()) earliest = Math.min(earliest ?? Infinity, audit.askedAt + this.timeoutMs + 1);
    return earliest;
  }
}

function key(peerId: string, round: number): string {
  return `${round}:${peerId}`;
}
