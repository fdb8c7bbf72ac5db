import type { PeerStatus } from "@crowdtrain/protocol";

/** How long a departed peer stays in the status as "gone", so the operator sees who just left. */
export const GONE_KEEP_MS = 2 * 60_000;
/** At most this many departed peers are kept (a flapping swarm must not grow the status without bound). */
export const GONE_KEEP_MAX = 64;

/**
 * Departed peers, shown for a while as "gone" with their last numbers (the coordinator forgets a
 * member at once). Fed by the coordinator's `departed` effects, so it costs O(1) per departure and
 * nothing per round; pure apart from the clock it is given.
 */
export class PeerRoster {
  /** Departed peers, oldest departure first. */
  private readonly gone = new Map<string, PeerStatus>();

  depart(row: PeerStatus, now: number, because?: string): void {
    this.gone.delete(row.id);
    this.gone.set(row.id, { ...row, state: "gone", leftAt: now, ...(because === undefined ? {} : { leftBecause: because }) });
    this.prune(now);
  }

  /** Live rows as given, then departed peers kept, newest departure first. */
  rows(live: readonly PeerStatus[], now: number): PeerStatus[] {
    this.prune(now);
    return [...live, ...[...this.gone.values()].reverse()];
  }

  private prune(now: number): void {
    for (const [id, row] of this.gone) {
      if (this.gone.size > GONE_KEEP_MAX || now - (row.leftAt ?? now) > GONE_KEEP_MS) this.gone.delete(id);
    }
  }
}
