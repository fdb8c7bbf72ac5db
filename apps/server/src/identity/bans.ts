/** How long an evicted member's address may not join again, by default. */
export const DEFAULT_BAN_MS = 60 * 60_000;
/** Addresses banned at once; the oldest ban goes first beyond it (a flood of evictions cannot grow memory). */
const MAX_BANS = 10_000;

export type Ban = { address: string; peerId: string; reason: string; until: number };

/**
 * Addresses whose member was evicted (for repeated strikes), refused at the handshake until their
 * ban ends. A ban by identity needs nothing here: an evicted identity is revoked and ids are never
 * issued twice. Loopback addresses are never banned: every tab on the server's machine, and every
 * volunteer behind a reverse proxy on it, shares one, so banning it would ban the honest too.
 */
export class BanList {
  private readonly bans = new Map<string, Ban>();

  constructor(
    private readonly banMs: number = DEFAULT_BAN_MS,
    private readonly now: () => number = Date.now,
    /** Ban loopback addresses too (tests that need a ban on this machine); off by default, see above. */
    private readonly banLoopback = false,
  ) {
    if (!(banMs >= 0)) throw new RangeError(`ban duration must be non-negative, got ${banMs}`);
  }

  /** Bans `address` for banMs; false when the address is exempt (loopback) or bans are off (0 ms). */
  ban(address: string, peerId: string, reason: string): boolean {
    if (this.banMs === 0 || (isLoopback(address) && !this.banLoopback)) return false;
    this.bans.delete(address);
    this.bans.set(address, { address, peerId, reason, until: this.now() + this.banMs });
    if (this.bans.size > MAX_BANS) this.bans.delete(this.bans.keys().next().value as string);
    return true;
  }

  /** The ban in force on `address`, if any. */
  check(address: string): Ban | undefined {
    const ban = this.bans.get(address);
    if (ban === undefined) return undefined;
    if (ban.until > this.now()) return ban;
    this.bans.delete(address);
    return undefined;
  }

  /** Bans in force, newest last (for the status; addresses are not shown there). */
  active(): Ban[] {
    const now = this.now();
    return [...this.bans.values()].filter((ban) => ban.until > now);
  }
}

function isLoopback(address: string): boolean {
  return address === "::1" || address.startsWith("127.") || address.startsWith("::ffff:127.");
}
