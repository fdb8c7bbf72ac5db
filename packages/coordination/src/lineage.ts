/**
 * The committed rounds the model's current state descends from, newest last, bounded to a window:
 * who contributed to each, which samples it used, and whether the server holds its state. A failed
 * audit rolls back to the newest of them the offender had not touched since its last passed audit;
 * the rounds after it leave the lineage, so a later failure never rolls back to a dead branch.
 */
export type LineageEntry = {
  round: number;
  hash: string;
  epoch: number;
  /** Plan members whose contributions went into this round (none for a rollback or the start). */
  members: ReadonlySet<string>;
  /** The samples this round used, with the epoch they belong to (given back if rolled back in it). */
  samples: readonly number[];
  /** The server reported it holds this round's state. */
  stored: boolean;
};

export type RollbackTarget = {
  to: LineageEntry;
  /** The rounds undone, oldest first. */
  undone: LineageEntry[];
  /** The offender's first touched round lies beyond the window: `to` is only the oldest state held. */
  truncated: boolean;
};

export class Lineage {
  private entries: LineageEntry[] = [];

  constructor(private readonly window: number) {
    if (!(Number.isInteger(window) && window >= 2)) throw new RangeError(`the lineage window must be an integer of at least 2, got ${window}`);
  }

  /** The state the job starts from (round 0 or a checkpoint's round): the server holds it. */
  start(round: number, hash: string, epoch: number): void {
    this.entries = [{ round, hash, epoch, members: new Set(), samples: [], stored: true }];
  }

  push(entry: Omit<LineageEntry, "stored">): void {
    this.entries.push({ ...entry, stored: false });
    if (this.entries.length > this.window) this.entries.shift();
  }

  /** The server now holds the state of `round` (and, since it only moves forward, not older ones it lacked). */
  markStored(round: number): void {
    for (const entry of this.entries) if (entry.round === round) entry.stored = true;
  }

  /** Whether the server holds the state of `round` (false for a round outside the window). */
  isStored(round: number): boolean {
    return this.entries.some((entry) => entry.round === round && entry.stored);
  }

  /**
   * Where to roll back to undo every round `peerId` contributed to after round `trustedThrough`:
   * the newest stored entry before the first such round. Undefined: nothing of its is in the model.
   */
  rollbackFor(peerId: string, trustedThrough: number): RollbackTarget | undefined {
    const first = this.entries.findIndex((e) => e.round > trustedThrough && e.members.has(peerId));
    if (first < 0) return undefined;
    for (let i = first - 1; i >= 0; i--) {
      const entry = this.entries[i] as LineageEntry;
      if (entry.stored) return { to: entry, undone: this.entries.slice(i + 1), truncated: false };
    }
    const oldest = this.entries.findIndex((e) => e.stored);
    // Nothing stored before its first round within the window: the oldest state held is the best we have.
    if (oldest < 0 || oldest >= this.entries.length - 1) return undefined;
    return { to: this.entries[oldest] as LineageEntry, undone: this.entries.slice(oldest + 1), truncated: true };
  }

  /** After a rollback: the undone rounds are not ancestors of the model any more. */
  truncateAfter(round: number): void {
    this.entries = this.entries.filter((e) => e.round <= round);
  }

  get newest(): LineageEntry | undefined {
    return this.entries.at(-1);
  }
}
