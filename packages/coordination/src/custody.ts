/**
 * Custody of the committed state: the server must come to hold the state of every committed round
 * (joiners download it, spot checks recompute from it, checkpoints store it). Its uploader sends it
 * with the round; when that fails, the next member holding it is asked, one at a time, each for a
 * bounded time. A finished job keeps its members until the final state is stored (or a deadline),
 * so its last checkpoint is of its last round. This class owns who is asked and until when; the
 * Coordinator sends the messages.
 */
export type WantedState = { round: number; hash: string };

export class StateCustody {
  private wanted: (WantedState & { asked: string | undefined; askedAt: number; tried: Set<string> }) | undefined;
  private stopping: { reason: string; until: number } | undefined;

  /** A round committed with `hash`; its uploader was asked with the round itself. */
  want(round: number, hash: string, uploader: string, now: number): void {
    this.wanted = { round, hash, asked: uploader, askedAt: now, tried: new Set([uploader]) };
  }

  /** The state the server still lacks, if any. */
  get lacking(): WantedState | undefined {
    return this.wanted === undefined ? undefined : { round: this.wanted.round, hash: this.wanted.hash };
  }

  /** Whether `peerId` is the member asked for the lacking state now. */
  isAsked(peerId: string): boolean {
    return this.wanted?.asked === peerId;
  }

  /**
   * Picks the next member to ask among `holders` (members holding the lacking state), each once,
   * then all over again (a slow uploader may have recovered). Undefined: nobody holds it.
   */
  askNext(holders: readonly string[], now: number): string | undefined {
    const wanted = this.wanted;
    if (wanted === undefined) return undefined;
    let next = holders.find((peer) => !wanted.tried.has(peer));
    if (next === undefined && holders.length > 0) {
      wanted.tried.clear();
      next = holders[0];
    }
    wanted.askedAt = now;
    wanted.asked = next;
    if (next !== undefined) wanted.tried.add(next);
    return next;
  }

  /** The server stored the state of `round`: true when nothing is lacking any more. */
  stored(round: number): boolean {
    if (this.wanted !== undefined && this.wanted.round <= round) this.wanted = undefined;
    return this.wanted === undefined;
  }

  /** Nothing is wanted any more (a rollback commits a state the server holds; a diverged job ends). */
  forget(): void {
    this.wanted = undefined;
  }

  /** Whether the member asked has had the lacking state's upload outstanding for longer than `timeoutMs`. */
  overdue(now: number, timeoutMs: number): boolean {
    return this.wanted !== undefined && now - this.wanted.askedAt > timeoutMs;
  }

  /** The job finished: its members are to be stopped with `reason` once the state is stored, or at `until`. */
  finishing(reason: string, until: number): void {
    this.stopping = { reason, until };
  }

  /** The reason to stop the members with, once (undefined if the job is not finishing or was already told). */
  takeStop(): string | undefined {
    const reason = this.stopping?.reason;
    this.stopping = undefined;
    return reason;
  }

  /** When the finishing job stops its members whatever the upload's state. */
  get stopDeadline(): number | undefined {
    return this.stopping?.until;
  }
}
