/**
 * Leases handed out ahead (overlap): the leases of the round after committed round `base`, which
 * its members computed while they waited for that commit. They become those members' leases when
 * the next round opens from `base` with exactly those members; otherwise (an abort or a rollback
 * moved the base, a member joined or left) they go back to the queue and the round splits afresh.
 * Until then they are in flight: a snapshot puts them back in the queue.
 */
export class LeasesAhead {
  private held: { base: number; leases: ReadonlyMap<string, readonly number[]>; since: ReadonlyMap<string, number> } | undefined;

  /** Keeps the leases ahead of round `base`'s members; `since`: when each began on its lease (its report). */
  keep(base: number, leases: ReadonlyMap<string, readonly number[]>, since: ReadonlyMap<string, number>): void {
    this.held = leases.size === 0 ? undefined : { base, leases, since };
  }

  /**
   * The leases for a round opening from committed round `base` with `members`, and when each began
   * on its lease; or undefined, after giving every held lease back (none fit).
   */
  take(base: number, members: readonly string[], giveBack: (leases: readonly (readonly number[])[]) => void): { leases: ReadonlyMap<string, readonly number[]>; since: ReadonlyMap<string, number> } | undefined {
    const held = this.held;
    this.held = undefined;
    if (held === undefined) return undefined;
    const same = members.length === held.leases.size && members.every((peer) => held.leases.has(peer));
    if (held.base === base && same) return { leases: held.leases, since: held.since };
    giveBack([...held.leases.values()]);
    return undefined;
  }

  /** Samples held ahead and not yet in a round. */
  inFlight(): number[] {
    return [...(this.held?.leases.values() ?? [])].flat();
  }
}
