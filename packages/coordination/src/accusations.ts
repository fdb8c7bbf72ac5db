/**
 * Who blamed whom for a failed all-reduce, and whether anyone else saw the same. A single member's
 * word is not enough to punish another (it could be lying to push an honest peer out), so an
 * accusation is acted on only when it is corroborated within `windowMs`: a second member names
 * the same suspect first-hand, or the suspect's own connection to the coordinator is gone too.
 * An accusation that nobody corroborates before its window ends counts against the accuser.
 */
export type Accusation = { accuser: string; suspect: string; attempt: number; at: number };

export type AccusationOutcome =
  /** Two distinct first-hand witnesses: strike the suspect. */
  | { kind: "corroborated"; suspect: string; accusers: string[] }
  | { kind: "pending" };

export class Accusations {
  private open: Accusation[] = [];

  constructor(private readonly windowMs: number) {
    if (!(windowMs > 0)) throw new RangeError(`accusation window must be positive, got ${windowMs}`);
  }

  record(accusation: Accusation): AccusationOutcome {
    if (this.open.some((a) => a.accuser === accusation.accuser && a.suspect === accusation.suspect && a.attempt === accusation.attempt)) {
      return { kind: "pending" };
    }
    this.open.push(accusation);
    const against = this.open.filter((a) => a.suspect === accusation.suspect && accusation.at - a.at <= this.windowMs);
    const accusers = [...new Set(against.map((a) => a.accuser))];
    if (accusers.length < 2) return { kind: "pending" };
    this.clear(accusation.suspect);
    return { kind: "corroborated", suspect: accusation.suspect, accusers };
  }

  /** The suspect's connection is gone: its accusers were right; nothing more to judge. */
  confirmByDeparture(suspect: string): void {
    this.clear(suspect);
  }

  /** The accuser left: its accusations can no longer be judged fairly either way. */
  forgetAccuser(accuser: string): void {
    this.open = this.open.filter((a) => a.accuser !== accuser);
  }

  /** The most recent open accuser of `suspect`, if any (the next plan separates them). */
  accuserOf(suspect: string): string | undefined {
    for (let k = this.open.length - 1; k >= 0; k--) if (this.open[k]?.suspect === suspect) return this.open[k]?.accuser;
    return undefined;
  }

  /** Accusations whose window ended unconfirmed, removed from the book. */
  expire(now: number): Accusation[] {
    const expired = this.open.filter((a) => now - a.at > this.windowMs);
    if (expired.length > 0) this.open = this.open.filter((a) => now - a.at <= this.windowMs);
    return expired;
  }

  nextExpiryAt(): number | undefined {
    return this.open.length === 0 ? undefined : Math.min(...this.open.map((a) => a.at)) + this.windowMs + 1;
  }

  private clear(suspect: string): void {
    this.open = this.open.filter((a) => a.suspect !== suspect);
  }
}
