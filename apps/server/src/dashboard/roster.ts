import type { PeerStatus } from "@crowdtrain/protocol";

/** How long a departed peer stays in the status as "gone", so the operator sees who just left. */
export const GONE_KEEP_MS = 2 * 60_000;
/** At most this many departed peers are kept (a flapping swarm must not grow the status without bound). */
export const GONE_KEEP_MAX = 64;

/**
 * Remembers the last seen row of every member, so a peer that leaves (the coordinator forgets it at
 * once) is still shown for a while as "gone" with its last numbers. Fed with the live rows on
 * every coordinator effect and every status build; pure apart from the clock it is given.
 */
export class PeerRoster {
  private readonly lastSeen = new Map<string, PeerStatus>();
  /** Departed peers, oldest departure first. */
  private readonly gone = new Map<string, PeerStatus>();

  /** Records the live rows; any previously seen peer missing from them left at `now`. */
  observe(live: readonly PeerStatus[], now: number): void {
    const present = new Set<string>();
    for (const row of live) {
      present.add(row.id);
      this.lastSeen.set(row.id, row);
      // A peer that comes back with the same id is live again.
      this.gone.delete(row.id);
    }
    for (const [id, row] of this.lastSeen) {
      if (present.has(id)) continue;
      this.lastSeen.delete(id);
      this.gone.set(id, { ...row, state: "gone", leftAt: now });
    }
    this.prune(now);
  }

  /** Live rows as given, then departed peers kept, newest departure first. */
  rows(live: readonly PeerStatus[], now: number): PeerStatus[] {
    this.observe(live, now);
    return [...live, ...[...this.gone.values()].reverse()];
  }

  private prune(now: number): void {
    for (const [id, row] of this.gone) {
      if (this.gone.size > GONE_KEEP_MAX || now - (row.leftAt ?? now) > GONE_KEEP_MS) this.gone.delete(id);
    }
  }
}
