/**
 * Who uploads each round's state. The uploader sends its pending state as soon as it reports; the
 * server needs it before the next round commits, since a spot check of round R+1 recomputes from
 * the state of round R (and joiners download the latest). A slow uploader (a hidden tab on a busy
 * machine was measured missing whole rounds) or a dishonest one that never uploads left the server
 * without those states: honest audits came out inconclusive, and a liar holding the role could have
 * made every audit inconclusive.
 *
 * So the role goes to the member whose last upload landed soonest after its report. A member never
 * measured is tried first (in plan order), once; one whose upload is still on its way is passed
 * over, and if it has not landed by the time the next round commits, the member ranks last until
 * it uploads in time again (as the only choice). Pure: times come with the calls.
 */
export class UploaderChoice {
  /** ms from report to landed upload, the last time each member was the uploader; Infinity: late. */
  private readonly latency = new Map<string, number>();
  /** The uploads awaited: the open round's, and the last committed round's until it lands or the next commits. */
  private readonly awaited = new Map<number, { peerId: string; reportedAt: number | undefined; committed: boolean }>();

  /** The uploader of a round opening with `order` (an aborted round's upload is no longer awaited). */
  choose(round: number, order: readonly string[]): string {
    for (const [awaitedRound, upload] of this.awaited) if (!upload.committed) this.awaited.delete(awaitedRound);
    // A member whose committed upload is still on its way is not asked for another meanwhile.
    const outstanding = new Set([...this.awaited.values()].map((upload) => upload.peerId));
    const rank = (peer: string): number => (outstanding.has(peer) ? Number.POSITIVE_INFINITY : (this.latency.get(peer) ?? -1));
    let best = order[0];
    if (best === undefined) throw new RangeError("a round needs at least one member to upload its state");
    for (const peer of order) if (rank(peer) < rank(best)) best = peer;
    this.awaited.set(round, { peerId: best, reportedAt: undefined, committed: false });
    return best;
  }

  /** A member reported its result for `round`: its upload, if it is the uploader, starts now. */
  reported(round: number, peerId: string, now: number): void {
    const upload = this.awaited.get(round);
    if (upload?.peerId === peerId && upload.reportedAt === undefined) upload.reportedAt = now;
  }

  /** `round` committed: an earlier round's upload that has not landed is late; this one's is awaited on. */
  committed(round: number): void {
    for (const [awaitedRound, upload] of this.awaited) {
      if (awaitedRound >= round || !upload.committed) continue;
      this.latency.set(upload.peerId, Number.POSITIVE_INFINITY);
      this.awaited.delete(awaitedRound);
    }
    const upload = this.awaited.get(round);
    if (upload !== undefined) upload.committed = true;
  }

  /** The server checked `peerId`'s upload of the state of `round` (and found nothing wrong). */
  landed(round: number, peerId: string, now: number): void {
    const upload = this.awaited.get(round);
    if (upload?.peerId !== peerId) return;
    this.latency.set(peerId, now - (upload.reportedAt ?? now));
    this.awaited.delete(round);
  }

  /** The member left: nothing of it is kept. */
  forget(peerId: string): void {
    this.latency.delete(peerId);
  }
}
