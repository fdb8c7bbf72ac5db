/**
 * Leases kept across an abort. When an attempt aborts (a member left, a link failed, a deadline
 * passed), the members that are still ready keep their leases for the next attempt from the same
 * committed round: each still holds the contribution it computed for that lease on those weights (a
 * worker keeps its last computation; apps/worker session machine), so a failure costs the attempt's
 * all-reduce and the replan, not its compute (at DiLoCo's H = 512 the compute is nearly all of a
 * round). Only the leases of members that did not come back ready go back to the queue; members
 * without a kept lease (joiners) sit that attempt out, as they would have nothing to compute.
 */
export type Kept = { lease: readonly number[]; startedAt: number; computeMs: number | undefined };

export class RetainedLeases {
  private held: { base: number; kept: ReadonlyMap<string, Kept> } | undefined;

  /** Keeps the leases of an aborted attempt from committed round `base`. */
  keep(base: number, kept: ReadonlyMap<string, Kept>): void {
    this.held = kept.size === 0 ? undefined : { base, kept };
  }

  /**
   * The kept leases of `members` for an attempt opening from committed round `base`; every other kept
   * lease (a member gone, or another base) is given back. Undefined when none is left.
   */
  take(base: number, members: readonly string[], giveBack: (leases: readonly (readonly number[])[]) => void): ReadonlyMap<string, Kept> | undefined {
    const held = this.held;
    this.held = undefined;
    if (held === undefined) return undefined;
    const present = new Set(held.base === base ? members : []);
    const taken = new Map<string, Kept>();
    const back: (readonly number[])[] = [];
    for (const [peer, kept] of held.kept) {
      if (present.has(peer)) taken.set(peer, kept);
      else back.push(kept.lease);
    }
    giveBack(back);
    return taken.size === 0 ? undefined : taken;
  }

  /** Gives back one member's kept lease: it was asked to fetch another state, so it computes afresh. */
  release(peer: string, giveBack: (leases: readonly (readonly number[])[]) => void): void {
    const kept = this.held?.kept.get(peer);
    if (this.held === undefined || kept === undefined) return;
    const rest = new Map(this.held.kept);
    rest.delete(peer);
    this.held = rest.size === 0 ? undefined : { base: this.held.base, kept: rest };
    giveBack([kept.lease]);
  }

  /** Samples kept and not yet in a round. */
  inFlight(): number[] {
    return [...(this.held?.kept.values() ?? [])].flatMap((kept) => kept.lease);
  }
}
