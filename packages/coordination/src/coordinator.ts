import type { CoordinatorMessage } from "@crowdtrain/protocol";
import { splitBatch } from "./leases.ts";
import { epochOrder } from "./permutation.ts";
import type {
  CommittedRound,
  CoordinatorConfig,
  CoordinatorEffect,
  CoordinatorEvent,
  EpochCoverage,
  Member,
  OpenRound,
  RoundReport,
} from "./types.ts";

export type CoordinatorStatus = "waiting" | "running" | "paused" | "done";

/** What survives a server restart (written into checkpoints by the server). */
export type CoordinatorSnapshot = {
  committedRound: number;
  committedHash: string | undefined;
  epoch: number;
  queue: number[];
  uses: number[];
  nextAttempt: number;
  finishedEpochs: EpochCoverage[];
  status: CoordinatorStatus;
};

/**
 * The cluster as a pure state machine: `handle(event)` updates the state and returns the effects
 * (messages to send, log lines, commits) for the server to carry out. No I/O, no clock: time comes
 * in on the events, so every rule here is tested without sockets or timers.
 *
 * Rules:
 * - A round opens when none is running and enough members hold the committed state. Its batch is
 *   the next `batchSize` samples of the epoch's order, split among the ring by measured speed.
 * - It commits when every ring member reported and all hashes agree. Only then do its samples
 *   count as used. Anything else (a failure, a departure, a hash mismatch, the deadline) aborts it:
 *   the leases go back to the front of the queue and the survivors, who restore their committed
 *   state on abort, are immediately ready for the next ring.
 * - Within an epoch each sample is leased into exactly one committed round.
 */
export class Coordinator {
  private readonly members = new Map<string, Member>();
  private current: OpenRound | undefined;
  private committedRound = 0;
  private committedHash: string | undefined;
  private epoch = 0;
  private queue: number[];
  private uses: Uint8Array;
  private nextAttempt = 1;
  private finishedEpochs: EpochCoverage[] = [];
  private status: CoordinatorStatus = "waiting";

  private maxRounds: number | undefined;

  constructor(readonly config: CoordinatorConfig, snapshot?: CoordinatorSnapshot) {
    this.maxRounds = config.maxRounds;
    if (!(config.trainCount > 0 && config.batchSize > 0 && config.minWorkers >= 1)) {
      throw new RangeError("trainCount, batchSize and minWorkers must be positive");
    }
    this.queue = epochOrder(config.trainCount, config.seed, 0);
    this.uses = new Uint8Array(config.trainCount);
    if (snapshot !== undefined) this.restore(snapshot);
  }

  handle(event: CoordinatorEvent): CoordinatorEffect[] {
    const effects: CoordinatorEffect[] = [];
    switch (event.type) {
      case "join":
        this.members.set(event.peerId, {
          peerId: event.peerId,
          name: event.name,
          backend: event.backend,
          adapter: event.adapter,
          joinedAt: event.now,
          state: "joining",
          holds: undefined,
          samplesPerSecond: undefined,
          lastRoundMs: undefined,
          lastHash: undefined,
          lastLease: 0,
          bytesSent: 0,
          bytesReceived: 0,
          strikes: 0,
          syncingSince: event.now,
        });
        if (event.lastAttempt !== undefined) this.nextAttempt = Math.max(this.nextAttempt, event.lastAttempt + 1);
        effects.push({ type: "log", kind: "joined", text: `${event.peerId} joined (${event.backend})` });
        break;
      case "ready": {
        const member = this.members.get(event.peerId);
        if (member === undefined) break;
        if (event.round === this.committedRound && (this.committedHash === undefined || event.hash === this.committedHash)) {
          member.holds = event.round;
          member.lastHash = event.hash;
          member.syncingSince = undefined;
          if (member.state !== "training") member.state = "ready";
        } else if (member.state !== "training") {
          this.askToSync(member, event.now, effects);
        }
        break;
      }
      case "result":
        this.onResult(event.peerId, event.attempt, event, event.now, effects);
        break;
      case "failed":
        if (this.current?.attempt === event.attempt && this.current.ring.includes(event.peerId)) {
          const suspect = event.suspect !== undefined && this.current.ring.includes(event.suspect) ? [event.suspect] : [];
          this.abort(`${event.peerId} failed (${event.code}): ${event.message}`, suspect, effects);
        }
        break;
      case "leave": {
        if (!this.members.delete(event.peerId)) break;
        effects.push({ type: "log", kind: "left", text: `${event.peerId} left: ${event.reason}` });
        if (this.current?.ring.includes(event.peerId)) this.abort(`${event.peerId} left: ${event.reason}`, [], effects);
        break;
      }
      case "tick":
        if (this.current !== undefined && event.now - this.current.openedAt > this.config.roundDeadlineMs) {
          const silent = this.current.ring.filter((p) => !this.current?.reports.has(p));
          this.abort(`deadline of ${this.config.roundDeadlineMs} ms passed; no report from ${silent.join(", ")}`, silent, effects);
        }
        break;
      case "pause":
        if (this.status === "running" || this.status === "waiting") {
          this.status = "paused";
          effects.push({ type: "log", kind: "paused", text: "paused by the operator" });
        }
        break;
      case "resume":
        if (this.status === "paused") {
          this.status = this.committedRound > 0 ? "running" : "waiting";
          effects.push({ type: "log", kind: "resumed", text: "resumed by the operator" });
        }
        break;
      case "stop":
        this.finish(event.reason, effects);
        break;
      case "set-max-rounds":
        if (this.status === "done") break;
        this.maxRounds = event.rounds;
        effects.push({ type: "log", kind: "target", text: `target set to ${event.rounds ?? "no"} rounds by the operator` });
        if (this.maxRounds !== undefined && this.committedRound >= this.maxRounds) this.finish(`reached ${this.maxRounds} rounds`, effects);
        break;
    }
    this.maybeOpenRound(event.now, effects);
    return effects;
  }

  private onResult(peerId: string, attempt: number, report: RoundReport, now: number, effects: CoordinatorEffect[]): void {
    const round = this.current;
    if (round === undefined || round.attempt !== attempt || !round.ring.includes(peerId) || round.reports.has(peerId)) return;
    round.reports.set(peerId, {
      hash: report.hash,
      samples: report.samples,
      loss: report.loss,
      timings: report.timings,
      bytesSent: report.bytesSent,
      bytesReceived: report.bytesReceived,
    });
    if (round.reports.size < round.ring.length) return;
    const hashes = new Set([...round.reports.values()].map((r) => r.hash));
    if (hashes.size !== 1) {
      const detail = [...round.reports].map(([p, r]) => `${p}=${r.hash}`).join(", ");
      this.abort(`weights hashes disagree: ${detail}`, [], effects);
      return;
    }
    this.commit(round, [...hashes][0] as string, now, effects);
  }

  private commit(round: OpenRound, hash: string, now: number, effects: CoordinatorEffect[]): void {
    this.current = undefined;
    this.committedRound = round.round;
    this.committedHash = hash;
    let samples = 0;
    let weightedLoss = 0;
    for (const [peer, lease] of round.leases) {
      for (const index of lease) this.uses[index] = (this.uses[index] as number) + 1;
      const report = round.reports.get(peer) as RoundReport;
      samples += report.samples;
      weightedLoss += report.loss * report.samples;
      const member = this.members.get(peer);
      if (member === undefined) continue;
      member.state = "ready";
      member.holds = round.round;
      member.lastHash = hash;
      member.strikes = 0;
      member.lastRoundMs = now - round.openedAt;
      member.bytesSent += report.bytesSent;
      member.bytesReceived += report.bytesReceived;
      const computeSeconds = Math.max(report.timings.computeMs, 1) / 1000;
      const speed = report.samples / computeSeconds;
      // An exponential average so one hiccup does not swing the next lease split.
      member.samplesPerSecond = member.samplesPerSecond === undefined ? speed : 0.7 * member.samplesPerSecond + 0.3 * speed;
    }
    // Members that were ready at the previous round but not in this ring are now one behind.
    for (const member of this.members.values()) {
      if (member.state === "ready" && member.holds !== round.round) this.askToSync(member, now, effects);
    }
    const uploader = round.ring[0] as string;
    for (const peer of round.ring) this.send(peer, { type: "commit", attempt: round.attempt, round: round.round, hash }, effects);
    const commit: CommittedRound = {
      round: round.round,
      attempt: round.attempt,
      epoch: round.epoch,
      hash,
      ring: round.ring,
      samples,
      loss: samples > 0 ? weightedLoss / samples : Number.NaN,
      roundMs: now - round.openedAt,
      reports: Object.fromEntries(round.reports),
      uploader,
    };
    effects.push({ type: "committed", commit });
    if (this.maxRounds !== undefined && this.committedRound >= this.maxRounds) {
      this.finish(`reached ${this.maxRounds} rounds`, effects);
    }
  }

  /** Aborts the open round: leases back to the front of the queue, suspects lose their place. */
  private abort(reason: string, suspects: string[], effects: CoordinatorEffect[]): void {
    const round = this.current;
    if (round === undefined) return;
    this.current = undefined;
    const returned: number[] = [];
    for (const peer of round.ring) returned.push(...(round.leases.get(peer) ?? []));
    this.queue = [...returned, ...this.queue];
    effects.push({ type: "log", kind: "aborted", text: `round ${round.round} (attempt ${round.attempt}) aborted: ${reason}` });
    for (const peer of round.ring) {
      const member = this.members.get(peer);
      if (member === undefined) continue;
      this.send(peer, { type: "abort", attempt: round.attempt, reason }, effects);
      if (suspects.includes(peer)) {
        member.strikes++;
        member.state = "joining";
        member.holds = undefined;
        if (member.strikes >= this.config.maxStrikes) {
          this.members.delete(peer);
          this.send(peer, { type: "stop", reason: `evicted after ${member.strikes} aborted rounds in a row` }, effects);
          effects.push({ type: "log", kind: "evicted", text: `${peer} evicted after ${member.strikes} strikes` });
        }
      } else {
        // Survivors restore their committed state on abort, so they are ready again at once.
        member.state = "ready";
      }
    }
  }

  private maybeOpenRound(now: number, effects: CoordinatorEffect[]): void {
    if (this.current !== undefined || this.status === "paused" || this.status === "done") return;
    const ready = [...this.members.values()]
      .filter((m) => m.state === "ready" && m.holds === this.committedRound)
      .sort((a, b) => a.joinedAt - b.joinedAt || (a.peerId < b.peerId ? -1 : 1));
    const needed = this.status === "waiting" ? this.config.minWorkers : 1;
    if (ready.length < needed || ready.length === 0) return;
    // Hold the round briefly for members fetching the state (joiners), so they enter at the next round.
    const syncing = [...this.members.values()].some((m) => m.syncingSince !== undefined && now - m.syncingSince < this.config.joinGraceMs);
    if (syncing && this.status === "running") return;
    if (this.queue.length === 0) {
      // finishEpoch may finish the job (epoch limit), which TS cannot see through the call.
      if (this.finishEpoch(effects) === "done") return;
    }
    this.status = "running";
    const batch = this.queue.splice(0, Math.min(this.config.batchSize, this.queue.length));
    const ring = ready.map((m) => m.peerId);
    const leases = splitBatch(batch, ring, (peer) => this.members.get(peer)?.samplesPerSecond);
    const round: OpenRound = {
      attempt: this.nextAttempt++,
      round: this.committedRound + 1,
      epoch: this.epoch,
      ring,
      leases,
      reports: new Map(),
      openedAt: now,
    };
    this.current = round;
    for (const member of ready) {
      member.state = "training";
      const lease = leases.get(member.peerId) ?? [];
      member.lastLease = lease.length;
      this.send(member.peerId, {
        type: "round",
        attempt: round.attempt,
        round: round.round,
        epoch: round.epoch,
        ring,
        lease,
        frameBytes: this.config.frameBytes,
        upload: member.peerId === ring[0],
      }, effects);
    }
  }

  private finishEpoch(effects: CoordinatorEffect[]): CoordinatorStatus {
    let usedOnce = 0;
    let usedTwice = 0;
    let unused = 0;
    for (const count of this.uses) {
      if (count === 1) usedOnce++;
      else if (count === 0) unused++;
      else usedTwice++;
    }
    const coverage: EpochCoverage = { epoch: this.epoch, samples: this.uses.length, usedOnce, usedTwice, unused };
    this.finishedEpochs.push(coverage);
    effects.push({ type: "epoch-finished", coverage });
    effects.push({ type: "log", kind: "epoch", text: `epoch ${this.epoch} finished: ${usedOnce}/${this.uses.length} samples used exactly once` });
    this.epoch++;
    if (this.config.maxEpochs !== undefined && this.epoch >= this.config.maxEpochs) {
      this.finish(`reached ${this.config.maxEpochs} epochs`, effects);
      return this.status;
    }
    this.queue = epochOrder(this.config.trainCount, this.config.seed, this.epoch);
    this.uses = new Uint8Array(this.config.trainCount);
    return this.status;
  }

  private finish(reason: string, effects: CoordinatorEffect[]): void {
    if (this.status === "done") return;
    if (this.current !== undefined) this.abort(`stopping: ${reason}`, [], effects);
    this.status = "done";
    effects.push({ type: "log", kind: "done", text: `training finished: ${reason}` });
    for (const peer of this.members.keys()) this.send(peer, { type: "stop", reason }, effects);
  }

  /** The member holds a stale state: it fetches the committed one, and the next round waits for it briefly. */
  private askToSync(member: Member, now: number, effects: CoordinatorEffect[]): void {
    member.state = "joining";
    member.holds = undefined;
    member.syncingSince = now;
    this.send(member.peerId, { type: "sync", round: this.committedRound }, effects);
  }

  private send(to: string, message: CoordinatorMessage, effects: CoordinatorEffect[]): void {
    effects.push({ type: "send", to, message });
  }

  // ---- views ----

  get state(): {
    status: CoordinatorStatus;
    maxRounds: number | undefined;
    committedRound: number;
    committedHash: string | undefined;
    epoch: number;
    current: OpenRound | undefined;
    members: Member[];
    epochProgress: { used: number; total: number };
    finishedEpochs: EpochCoverage[];
  } {
    let used = 0;
    for (const count of this.uses) if (count > 0) used++;
    return {
      status: this.status,
      maxRounds: this.maxRounds,
      committedRound: this.committedRound,
      committedHash: this.committedHash,
      epoch: this.epoch,
      current: this.current,
      members: [...this.members.values()],
      epochProgress: { used, total: this.uses.length },
      finishedEpochs: [...this.finishedEpochs],
    };
  }

  /** Uses of each sample in the current epoch (committed rounds only). */
  coverage(): Uint8Array {
    return this.uses.slice();
  }

  snapshot(): CoordinatorSnapshot {
    // An open round is not committed: its leases belong back in the queue.
    const inFlight = this.current === undefined ? [] : [...this.current.leases.values()].flat();
    return {
      committedRound: this.committedRound,
      committedHash: this.committedHash,
      epoch: this.epoch,
      queue: [...inFlight, ...this.queue],
      uses: Array.from(this.uses),
      nextAttempt: this.nextAttempt,
      finishedEpochs: [...this.finishedEpochs],
      status: this.status === "done" ? "done" : this.committedRound > 0 ? "running" : "waiting",
    };
  }

  private restore(s: CoordinatorSnapshot): void {
    if (s.uses.length !== this.config.trainCount) throw new RangeError(`snapshot covers ${s.uses.length} samples, job has ${this.config.trainCount}`);
    this.committedRound = s.committedRound;
    this.committedHash = s.committedHash;
    this.epoch = s.epoch;
    this.queue = [...s.queue];
    this.uses = Uint8Array.from(s.uses);
    this.nextAttempt = s.nextAttempt;
    this.finishedEpochs = [...s.finishedEpochs];
    this.status = s.status;
  }
}
