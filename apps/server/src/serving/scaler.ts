import type { MemberRole } from "@crowdtrain/coordination";
import type { ScaleDecision } from "@crowdtrain/protocol";
import { Autoscaler, DEFAULT_AUTOSCALER_CONFIG, type AutoscalerConfig, type Dispatcher } from "@crowdtrain/serving";
import { chooseToServe, chooseToTrain, type Candidate } from "./moves.ts";

/** Scale decisions a status lists. */
const RECENT_DECISIONS = 20;

export type PoolMember = Candidate & { role: MemberRole };

export type ScalerDeps = {
  /** The job's members whose role is `role`, now. */
  withRole: (role: MemberRole) => readonly PoolMember[];
  /** One member of the job now, or undefined. */
  member: (peerId: string) => PoolMember | undefined;
  /** Trainers the job keeps however high the load (its minimum workers). */
  minTrainers: number;
  /** Asks the coordinator to move a member (it answers with `roleChanged`). */
  setRole: (peerId: string, role: MemberRole) => void;
  log: (kind: string, text: string) => void;
  /** The serving tabs' queue, held requests and measured capacities. */
  dispatcher: Dispatcher;
};

/**
 * The autoscaler's loop, carried out: counts arrivals, asks the pure Autoscaler for a target, and
 * moves members through the coordinator (the slowest trainers to serving, the least busy moved tabs
 * back). Remembers the moves asked and not yet made, and which tabs it moved (the others joined to
 * serve and are never moved back).
 */
export class PoolScaler {
  readonly config: AutoscalerConfig;
  private readonly autoscaler: Autoscaler;
  /** Moves asked of the coordinator and not yet made. */
  private readonly moving = new Map<string, MemberRole>();
  private readonly moved = new Set<string>();
  private readonly decisions: ScaleDecision[] = [];
  private arrivals = 0;

  constructor(
    private readonly deps: ScalerDeps,
    config: Partial<AutoscalerConfig> = {},
  ) {
    this.config = { ...DEFAULT_AUTOSCALER_CONFIG, ...config };
    this.autoscaler = new Autoscaler(this.config);
  }

  /** A request arrived (answered or refused): the load the autoscaler sees. */
  arrived(): void {
    this.arrivals++;
  }

  /**
   * Members serving now or on their way (asked to move), less those on their way back. Read 20
   * times a second (the pool's statistics), so it looks at the servers and the moves only, not at
   * every member.
   */
  poolSize(): number {
    let size = 0;
    for (const server of this.deps.withRole("server")) if (this.moving.get(server.peerId) !== "trainer") size++;
    for (const [peerId, role] of this.moving) {
      const member = this.deps.member(peerId);
      if (role === "server" && member !== undefined && member.role !== "server") size++;
    }
    return size;
  }

  /** Whether a trainer could be moved to serving now. */
  canGrow(): boolean {
    return this.config.maxTabs > this.poolSize() && chooseToServe(this.trainers(), 1, this.deps.minTrainers).length > 0;
  }

  /** Whether this loop moved `peerId` to serving (it may move it back). */
  movedHere(peerId: string): boolean {
    return this.moved.has(peerId);
  }

  /** The coordinator made a move (a `role-changed` effect). */
  roleChanged(peerId: string, role: MemberRole): void {
    this.moving.delete(peerId);
    if (role !== "server") this.moved.delete(peerId);
  }

  departed(peerId: string): void {
    this.moving.delete(peerId);
    this.moved.delete(peerId);
  }

  /** One look at the load: a decision, and the moves that carry it out. */
  scale(now: number): void {
    const { dispatcher } = this.deps;
    const poolSize = this.poolSize();
    const decision = this.autoscaler.observe({ now, arrivals: this.arrivals, queued: dispatcher.queued, poolSize, capacityRps: dispatcher.measure(now) });
    this.arrivals = 0;
    if (decision.changed) {
      this.decisions.push({ at: now, from: poolSize, to: decision.target, panic: decision.panic, reason: decision.reason });
      if (this.decisions.length > RECENT_DECISIONS) this.decisions.shift();
      this.deps.log("serving", `serving pool ${poolSize} -> ${decision.target}: ${decision.reason}`);
    }
    if (decision.target > poolSize) {
      for (const peerId of chooseToServe(this.trainers(), decision.target - poolSize, this.deps.minTrainers)) this.move(peerId, "server");
    } else if (decision.target < poolSize) {
      const movedBack = dispatcher.views().filter((t) => this.moved.has(t.id) && !t.draining && !this.moving.has(t.id));
      for (const peerId of chooseToTrain(movedBack, poolSize - decision.target)) {
        // No new requests for it; what it holds it may answer until its socket closes.
        dispatcher.drain(peerId);
        this.move(peerId, "trainer");
      }
    }
  }

  status(): { poolSize: number; target: number; minTabs: number; maxTabs: number; panic: boolean; decisions: ScaleDecision[] } {
    return {
      poolSize: this.poolSize(),
      target: this.autoscaler.target,
      minTabs: this.config.minTabs,
      maxTabs: this.config.maxTabs,
      panic: this.autoscaler.panicking,
      decisions: [...this.decisions],
    };
  }

  private trainers(): Candidate[] {
    return this.deps.withRole("trainer").filter((m) => !this.moving.has(m.peerId));
  }

  private move(peerId: string, role: MemberRole): void {
    this.moving.set(peerId, role);
    if (role === "server") this.moved.add(peerId);
    this.deps.setRole(peerId, role);
  }
}
