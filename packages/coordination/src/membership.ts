import type { Backend } from "@crowdtrain/protocol";
import type { Member, MemberRole } from "./types.ts";

export type StrikeOutcome = { strikes: number; evicted: boolean };

/**
 * Who is in the job and in what state: joining (fetching the committed state), ready (holds it),
 * training (in the open round). Owns strikes and their forgiveness. Lookups are by id in O(1);
 * members fetching state are kept in their own set, so asking "is anyone still syncing?" costs
 * O(syncing), not O(members).
 */
export class Membership {
  private readonly members = new Map<string, Member>();
  private readonly syncing = new Set<Member>();

  constructor(
    private readonly maxStrikes: number,
    private readonly strikeDecayRounds: number,
  ) {
    if (!(maxStrikes >= 1 && strikeDecayRounds >= 1)) throw new RangeError("maxStrikes and strikeDecayRounds must be at least 1");
  }

  get size(): number {
    return this.members.size;
  }

  get(peerId: string): Member | undefined {
    return this.members.get(peerId);
  }

  add(input: { peerId: string; name?: string | undefined; backend: Backend; adapter?: string | undefined; role?: MemberRole | undefined; memoryMiB?: number | undefined; now: number }): Member {
    if (this.members.has(input.peerId)) throw new RangeError(`member ${input.peerId} joined twice`);
    const member: Member = {
      peerId: input.peerId,
      name: input.name,
      backend: input.backend,
      adapter: input.adapter,
      role: input.role ?? "trainer",
      joinedAt: input.now,
      // A tab that joins to serve syncs the model too, but no round waits for it.
      state: input.role === "server" ? "serving" : "joining",
      holds: undefined,
      samplesPerSecond: undefined,
      lastRoundMs: undefined,
      lastHash: undefined,
      lastLease: 0,
      bytesSent: 0,
      bytesReceived: 0,
      strikes: 0,
      cleanRounds: 0,
      syncingSince: input.now,
      audits: { passed: 0, failed: 0 },
      memoryMiB: input.memoryMiB,
      stage: undefined,
    };
    this.members.set(member.peerId, member);
    if (member.state === "joining") this.syncing.add(member);
    return member;
  }

  remove(peerId: string): Member | undefined {
    const member = this.members.get(peerId);
    if (member === undefined) return undefined;
    this.members.delete(peerId);
    this.syncing.delete(member);
    return member;
  }

  /**
   * The member is fetching the committed state (it joined, or its state is behind). With `grace`,
   * the next round waits for it a little; a member knocked back for a fault gets no such wait.
   */
  startSync(member: Member, now: number, grace: boolean): void {
    member.state = "joining";
    member.holds = undefined;
    member.syncingSince = grace ? now : undefined;
    if (grace) this.syncing.add(member);
    else this.syncing.delete(member);
  }

  /** The member says it holds the committed state of `round`. */
  holdsState(member: Member, round: number, hash: string): void {
    member.holds = round;
    member.lastHash = hash;
    // What a member says it holds after a sync is the whole state.
    member.stage = undefined;
    member.syncingSince = undefined;
    this.syncing.delete(member);
    if (member.state !== "training" && member.state !== "serving") member.state = "ready";
  }

  /** The member now serves: out of every round, and no round waits for its state. */
  serve(member: Member): void {
    member.role = "server";
    member.state = "serving";
    member.syncingSince = undefined;
    this.syncing.delete(member);
  }

  /** True while a member that started fetching the state less than `graceMs` ago has not finished. */
  anySyncingWithin(now: number, graceMs: number): boolean {
    for (const member of this.syncing) if (member.syncingSince !== undefined && now - member.syncingSince < graceMs) return true;
    return false;
  }

  /** When the last grace period of a syncing member ends (the next round may open then). */
  graceEndsAt(graceMs: number): number | undefined {
    let latest: number | undefined;
    for (const member of this.syncing) {
      if (member.syncingSince !== undefined) latest = Math.max(latest ?? 0, member.syncingSince + graceMs);
    }
    return latest;
  }

  /** Trainers holding `round`, in join order (ties by id): the members of the next plan. */
  readyTrainers(round: number): Member[] {
    const ready: Member[] = [];
    for (const m of this.members.values()) if (m.state === "ready" && m.holds === round && m.role === "trainer") ready.push(m);
    return ready.sort((a, b) => a.joinedAt - b.joinedAt || (a.peerId < b.peerId ? -1 : 1));
  }

  strike(member: Member): StrikeOutcome {
    member.strikes++;
    member.cleanRounds = 0;
    return { strikes: member.strikes, evicted: member.strikes >= this.maxStrikes };
  }

  /** A committed round the member took part in: every strikeDecayRounds of them forgive one strike. */
  recordClean(member: Member): void {
    if (member.strikes === 0) return;
    member.cleanRounds++;
    if (member.cleanRounds >= this.strikeDecayRounds) {
      member.strikes--;
      member.cleanRounds = 0;
    }
  }

  values(): IterableIterator<Member> {
    return this.members.values();
  }

  /** The members whose role is `role` (the members themselves, not copies). */
  withRole(role: MemberRole): Member[] {
    const found: Member[] = [];
    for (const member of this.members.values()) if (member.role === role) found.push(member);
    return found;
  }

  /** Read-only copies of every member, in join order. */
  rows(): Readonly<Member>[] {
    return [...this.members.values()].map((m) => ({ ...m, audits: { ...m.audits } }));
  }
}
