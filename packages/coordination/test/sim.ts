import type { ResolvedCoordinatorMessage } from "@crowdtrain/protocol";
import { Coordinator, type CoordinatorConfig, type CoordinatorEffect, type Member } from "../src/index.ts";

export const CONFIG: CoordinatorConfig = {
  trainCount: 100,
  batchSize: 12,
  seed: 7,
  maxRounds: undefined,
  maxEpochs: undefined,
  minWorkers: 1,
  initialHash: "0".repeat(64),
  roundDeadlineMs: 1_000,
  frameBytes: 65_536,
  maxStrikes: 3,
  strikeDecayRounds: 10,
  joinGraceMs: 500,
  // Rounds re-open at once after an abort unless a test is about the re-plan delay.
  replanDelayMs: 0,
  accusationWindowMs: 500,
  stateUploadTimeoutMs: 800,
};

export const TIMINGS = { computeMs: 10, readbackMs: 1, allReduceMs: 5, updateMs: 1 };
export const HASH = (round: number): string => round.toString(16).padStart(64, "0");

/** Drives a Coordinator and records what it sent to whom. */
export class Harness {
  readonly effects: CoordinatorEffect[] = [];
  now = 0;
  constructor(readonly coordinator: Coordinator) {}

  static create(config: Partial<CoordinatorConfig> = {}): Harness {
    return new Harness(new Coordinator({ ...CONFIG, ...config }));
  }

  apply(event: Parameters<Coordinator["handle"]>[0]): CoordinatorEffect[] {
    const out = this.coordinator.handle(event);
    this.effects.push(...out);
    return out;
  }

  join(peerId: string): void {
    this.apply({ type: "join", peerId, backend: "cpu", now: this.now });
    const s = this.coordinator.state;
    this.apply({ type: "ready", peerId, round: s.committedRound, hash: s.committedHash, now: this.now });
  }

  /** The last message of a type sent to a peer. */
  lastTo<T extends ResolvedCoordinatorMessage["type"]>(peer: string, type: T): Extract<ResolvedCoordinatorMessage, { type: T }> | undefined {
    for (let k = this.effects.length - 1; k >= 0; k--) {
      const e = this.effects[k];
      if (e?.type === "send" && e.to === peer && e.message.type === type) return e.message as Extract<ResolvedCoordinatorMessage, { type: T }>;
    }
    return undefined;
  }

  /** Every member of the open round reports the same hash (a plan of one: the server checked its state too). */
  reportAll(hash = HASH(this.coordinator.state.committedRound + 1), except: string[] = []): void {
    const round = this.coordinator.state.current;
    if (round === undefined) throw new Error("no open round");
    for (const peer of round.members) {
      if (except.includes(peer)) continue;
      this.report(peer, hash);
    }
    if (round.members.length === 1 && except.length === 0) this.verify(round.uploader, hash);
  }

  report(peer: string, hash: string, samples?: number): void {
    const round = this.coordinator.state.current;
    if (round === undefined) throw new Error("no open round");
    this.now += 1;
    const leased = round.leases.get(peer)?.length ?? 0;
    this.apply({ type: "result", peerId: peer, attempt: round.attempt, hash, samples: samples ?? leased, loss: 1, timings: TIMINGS, bytesSent: 10, bytesReceived: 10, now: this.now });
  }

  /** The server checked the uploader's pending state of the open round. */
  verify(peer: string, hash: string, problem?: string): void {
    const round = this.coordinator.state.current;
    if (round === undefined) throw new Error("no open round");
    this.apply({ type: "state-checked", peerId: peer, round: round.round, attempt: round.attempt, hash, problem, now: this.now });
  }

  /** Texts of the log effects of `kind` so far. */
  logs(kind: string): string[] {
    return this.effects.flatMap((e) => (e.type === "log" && e.kind === kind ? [e.text] : []));
  }

  member(peerId: string): Readonly<Member> | undefined {
    return this.coordinator.state.members.find((m) => m.peerId === peerId);
  }
}
