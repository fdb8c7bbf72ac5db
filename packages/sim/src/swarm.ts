import { AllReduceError, createAllReducer, DEFAULT_OPTIONS, type AllReducer } from "@crowdtrain/allreduce";
import { Coordinator, type CommittedRound, type CoordinatorEffect, type CoordinatorEvent } from "@crowdtrain/coordination";
import { planGrid, type Codec, type Plan, type ResolvedCoordinatorMessage, type Topology } from "@crowdtrain/protocol";
import { Draws, type Population, type Volunteer } from "./models.ts";
import { reduceByPlan } from "./allreduce-only.ts";
import { SimNetwork } from "./network.ts";
import type { VirtualClock } from "./virtual-clock.ts";

/** One simulated run: a swarm training with the real coordinator and all-reduce, in virtual time. */
export type SwarmConfig = {
  peers: number;
  topology: Topology;
  codec: Exclude<Codec, "topk">;
  /** 1: sync (an all-reduce per batch); H > 1: DiLoCo, H local batches per all-reduce. */
  innerSteps: number;
  /** Samples each peer computes per step (weak scaling: the global batch grows with the swarm). */
  perPeerBatch: number;
  /**
   * The coordinator hands each member its next lease with this round's (as the server does), and a
   * peer computes it while it waits for the commit. Off in `npm run sim`'s default runs.
   */
  leaseAhead: boolean;
  /**
   * A peer's local work between its all-reduce and its result (the optimizer step), ms. 0 where the
   * compute speed stands for all local work; the check against bench:train sets the one measured.
   */
  updateMs: number;
  /** Parameters of the modelled model: what the links are charged for. */
  modelParams: number;
  /** Elements the simulator really reduces (the links charge modelParams / simulatedParams per element). */
  simulatedParams: number;
  /** Bytes of the committed state a joiner downloads (weights and optimizer state). */
  stateBytes: number;
  population: Population;
  /** Poisson departures and joins per minute of virtual time. */
  departuresPerMinute: number;
  joinsPerMinute: number;
  /** Committed rounds to measure, after a first one that is not counted (it includes the start). */
  rounds: number;
  /** Give up after this much virtual time. */
  maxVirtualMs: number;
  seed: number;
};

/** One committed round: `roundMs` from its opening to its commit, at `committedAt` (virtual ms). */
export type RoundFigures = { round: number; plan: string; members: number; roundMs: number; committedAt: number; computeMs: number; allReduceMs: number; samples: number; idealSamplesPerSecond: number };

export type SwarmResult = {
  rounds: RoundFigures[];
  /** Committed samples per second over the measured rounds. */
  samplesPerSecond: number;
  /** samplesPerSecond over what the members compute alone (Σ of their speeds): 1 is perfect. */
  scalingEfficiency: number;
  /** Mean wire bytes a member sent per measured round (payloads scaled to the modelled model). */
  bytesPerPeerPerRound: number;
  /** Attempts aborted (departures mid-round, mostly). */
  aborted: number;
  departures: number;
  joins: number;
  virtualMs: number;
  /** Timers the virtual clock ran: the simulator's own work. */
  events: number;
};

/** A dense stand-in's length: dense frames carry nothing per chunk, so a short vector times the same as the model. */
const DENSE_STAND_IN_PARAMS = 4_096;

/**
 * The stand-in vector's length for a codec (SwarmConfig.simulatedParams): short for dense; int8 and
 * fp16 carry a scale per chunk, which a short stand-in's tiny segments would inflate (at 1,000 peers a
 * 4,096-element stand-in has 4-element segments), so they reduce the whole model.
 */
export function standInParams(codec: Exclude<Codec, "topk">, modelParams: number): number {
  return codec === "dense" ? Math.min(DENSE_STAND_IN_PARAMS, modelParams) : modelParams;
}

/** How often the server ticks the coordinator (deadlines, accusation windows). */
const TICK_MS = 1_000;
/** A lease element stands for 1/UNITS_PER_STEP of each peer's H inner steps at most (see samplesPerUnit). */
const UNITS_PER_STEP = 8;
/** The sample queue holds this many rounds' worth beyond the run's: no epoch ends during a run. */
const SPARE_ROUNDS = 20;

/** A lease computed for `round` (on the weights before it), done at `doneAt` (virtual ms). */
type Computation = { round: number; lease: readonly number[]; doneAt: number; computeMs: number };

type SimPeer = {
  id: string;
  volunteer: Volunteer;
  reducer: AllReducer;
  gradient: Float32Array;
  alive: boolean;
  /** The attempt the coordinator last aborted for it: one still computing must not start its all-reduce. */
  abortedUpTo: number;
  /**
   * Its last computation for a round it was given: a retry of the same round with the same lease
   * (the coordinator keeps leases across an abort) reuses it, as a worker does.
   */
  computed?: Computation;
  /** Its computation of the lease handed out ahead with attempt `base`: dropped if that attempt aborts. */
  ahead?: Computation & { base: number };
};

/**
 * Drives a swarm: each peer is a real all-reducer (packages/allreduce) on the simulated network, the
 * server is the real Coordinator (packages/coordination), and a peer's work is modelled: it computes
 * its lease at its drawn speed, then all-reduces a short stand-in vector (the links charge for the
 * modelled one), and reports the mean's hash. Messages between server and peers take the peer's
 * one-way latency. With `leaseAhead`, a peer computes its next lease once it has reported its result.
 */
export class Swarm {
  private readonly network: SimNetwork;
  private readonly coordinator: Coordinator;
  private readonly draws: Draws;
  /** The stand-in gradients' values: their own stream, so a run's volunteers do not depend on the stand-in's length. */
  private readonly values: Draws;
  private readonly peers = new Map<string, SimPeer>();
  private readonly commits: { commit: CommittedRound; at: number; ideal: number }[] = [];
  private aborted = 0;
  /** Samples a lease element stands for: DiLoCo's H inner steps in at most UNITS_PER_STEP units. */
  private readonly samplesPerUnit: number;
  private departures = 0;
  private joins = 0;
  private nextId = 0;
  private stopped = false;
  /** A failure of the simulator itself (not of a simulated peer): the run rejects with it. */
  private fatal: unknown;

  constructor(
    private readonly config: SwarmConfig,
    private readonly clock: VirtualClock,
  ) {
    const scale = config.modelParams / config.simulatedParams;
    this.network = new SimNetwork(clock, { payloadScale: scale, goneAfterMs: 1_000 });
    this.draws = new Draws(config.seed);
    this.values = new Draws(config.seed ^ 0x5eed);
    // A lease element stands for samplesPerUnit samples (H / min(H, UNITS_PER_STEP)), so the
    // coordinator's queue and leases stay at most UNITS_PER_STEP steps' batch whatever H is (at
    // H = 512 and 1,000 peers the samples themselves would be 750 million indices), while a lease is
    // still cut finely enough for slow volunteers (a unit of all H samples took a straggler seconds).
    this.samplesPerUnit = config.innerSteps / Math.min(config.innerSteps, UNITS_PER_STEP);
    const batch = config.peers * config.perPeerBatch * Math.min(config.innerSteps, UNITS_PER_STEP);
    this.coordinator = new Coordinator({
      // Only committed rounds use samples (an aborted one returns its own to the queue).
      trainCount: batch * (config.rounds + SPARE_ROUNDS),
      batchSize: batch,
      seed: config.seed,
      maxRounds: undefined,
      maxEpochs: undefined,
      minWorkers: config.peers,
      initialHash: "0".repeat(64),
      topology: config.topology,
      codec: config.codec,
      roundDeadlineMs: 30 * 60_000,
      // A real frame carries at most 64 KiB: the stand-in's frames are cut so each stands for one.
      frameBytes: Math.max(4, 4 * Math.floor(64 * 1024 / scale / 4)),
      joinGraceMs: 5_000,
      replanDelayMs: 1_000,
      maxStrikes: 3,
      strikeDecayRounds: 100,
      accusationWindowMs: 10_000,
      stateUploadTimeoutMs: 60_000,
      leaseAhead: config.leaseAhead,
      spotCheck: 0,
    });
  }

  async run(): Promise<SwarmResult> {
    for (let k = 0; k < this.config.peers; k++) this.join();
    this.scheduleChurn();
    const tick = (): void => {
      if (this.stopped) return;
      this.apply({ type: "tick", now: this.clock.now() });
      this.clock.setTimeout(tick, TICK_MS);
    };
    this.clock.setTimeout(tick, TICK_MS);
    const startBytes = new Map<string, number>();
    await this.clock.run(() => this.fatal !== undefined || this.commits.length >= 1, this.config.maxVirtualMs);
    for (const id of this.peers.keys()) startBytes.set(id, this.network.bytesSent(id));
    await this.clock.run(() => this.fatal !== undefined || this.commits.length >= this.config.rounds + 1, this.config.maxVirtualMs);
    this.stopped = true;
    for (const peer of this.peers.values()) peer.reducer.close();
    if (this.fatal !== undefined) throw this.fatal;
    return this.result(startBytes);
  }

  private result(startBytes: Map<string, number>): SwarmResult {
    const measured = this.commits.slice(1);
    const rounds = measured.map(({ commit, at, ideal }) => {
      const reports = [...commit.reports.values()];
      return {
        round: commit.round,
        plan: planLabel(commit.plan),
        members: commit.plan.members.length,
        roundMs: commit.roundMs,
        committedAt: at,
        computeMs: Math.max(...reports.map((r) => r.timings.computeMs)),
        allReduceMs: Math.max(...reports.map((r) => r.timings.allReduceMs)),
        samples: commit.samples * this.samplesPerUnit,
        idealSamplesPerSecond: ideal,
      };
    });
    const first = this.commits[0];
    const last = this.commits.at(-1);
    const elapsedMs = first !== undefined && last !== undefined && measured.length > 0 ? last.at - first.at : Number.NaN;
    const samples = rounds.reduce((sum, r) => sum + r.samples, 0);
    const samplesPerSecond = samples / (elapsedMs / 1000);
    const ideal = rounds.reduce((sum, r) => sum + r.idealSamplesPerSecond, 0) / Math.max(1, rounds.length);
    let bytes = 0;
    for (const [id, at] of startBytes) bytes += this.network.bytesSent(id) - at;
    const memberRounds = rounds.reduce((sum, r) => sum + r.members, 0);
    return {
      rounds,
      samplesPerSecond,
      scalingEfficiency: samplesPerSecond / ideal,
      bytesPerPeerPerRound: memberRounds === 0 ? Number.NaN : bytes / memberRounds,
      aborted: this.aborted,
      departures: this.departures,
      joins: this.joins,
      virtualMs: this.clock.now(),
      events: this.clock.events,
    };
  }

  private join(): void {
    const id = `p${this.nextId++}`;
    const volunteer = this.draws.volunteer(this.config.population);
    const transport = this.network.add(id, volunteer.link);
    const reducer = createAllReducer({ transport, clock: this.clock, options: { ...DEFAULT_OPTIONS, ringStartTimeoutMs: 120_000, roundTimeoutMs: 600_000 } });
    const gradient = new Float32Array(this.config.simulatedParams);
    for (let e = 0; e < gradient.length; e++) gradient[e] = this.values.uniform() - 0.5;
    this.peers.set(id, { id, volunteer, reducer, gradient, alive: true, abortedUpTo: -1 });
    this.toServer(id, { type: "join", peerId: id, backend: "webgpu", now: 0 });
    this.fetchStateThenReady(id);
  }

  private scheduleChurn(): void {
    const { departuresPerMinute, joinsPerMinute } = this.config;
    if (departuresPerMinute > 0) {
      const depart = (): void => {
        if (this.stopped) return;
        const alive = [...this.peers.values()].filter((p) => p.alive);
        const victim = alive[Math.floor(this.draws.uniform() * alive.length)];
        if (victim !== undefined) this.leave(victim, "closed its tab");
        this.clock.setTimeout(depart, this.draws.exponential(60_000 / departuresPerMinute));
      };
      this.clock.setTimeout(depart, this.draws.exponential(60_000 / departuresPerMinute));
    }
    if (joinsPerMinute > 0) {
      const arrive = (): void => {
        if (this.stopped) return;
        this.joins++;
        this.join();
        this.clock.setTimeout(arrive, this.draws.exponential(60_000 / joinsPerMinute));
      };
      this.clock.setTimeout(arrive, this.draws.exponential(60_000 / joinsPerMinute));
    }
  }

  private leave(peer: SimPeer, reason: string): void {
    if (!peer.alive) return;
    peer.alive = false;
    this.departures++;
    peer.reducer.close();
    this.network.kill(peer.id, reason);
    // The server sees the socket close as the others see the links close.
    this.clock.setTimeout(() => this.apply({ type: "leave", peerId: peer.id, reason, now: this.clock.now() }), 1_000);
  }

  /** A peer's message reaches the server after its one-way latency. */
  private toServer(id: string, event: CoordinatorEvent): void {
    const peer = this.peers.get(id);
    if (peer === undefined || !peer.alive) return;
    this.clock.setTimeout(() => {
      if (peer.alive) this.apply({ ...event, now: this.clock.now() });
    }, peer.volunteer.link.rttMs / 2);
  }

  private apply(event: CoordinatorEvent): void {
    for (const effect of this.coordinator.handle(event)) this.carryOut(effect);
  }

  private carryOut(effect: CoordinatorEffect): void {
    switch (effect.type) {
      case "send": {
        const peer = this.peers.get(effect.to);
        if (peer === undefined || !peer.alive) return;
        this.clock.setTimeout(() => {
          if (peer.alive) this.receive(peer, effect.message);
        }, peer.volunteer.link.rttMs / 2);
        return;
      }
      case "committed": {
        const ideal = effect.commit.plan.members.reduce((sum, id) => sum + (this.peers.get(id)?.volunteer.samplesPerSecond ?? 0), 0);
        this.commits.push({ commit: effect.commit, at: this.clock.now(), ideal });
        const uploader = this.peers.get(effect.commit.uploader);
        if (uploader !== undefined) {
          const round = effect.commit.round;
          this.clock.setTimeout(() => this.apply({ type: "state-stored", round, now: this.clock.now() }), SimNetwork.transferMs(this.config.stateBytes, uploader.volunteer.link.upBps));
        }
        return;
      }
      case "aborted":
        this.aborted++;
        return;
      case "disconnect": {
        const peer = this.peers.get(effect.peerId);
        if (peer !== undefined) this.leave(peer, effect.reason);
        return;
      }
      default:
        return;
    }
  }

  private receive(peer: SimPeer, message: ResolvedCoordinatorMessage): void {
    switch (message.type) {
      case "round":
        this.train(peer, message);
        return;
      case "abort":
        peer.abortedUpTo = Math.max(peer.abortedUpTo, message.attempt);
        // Computed on the weights the aborted attempt would have made: the worker drops it too.
        if (peer.ahead !== undefined && peer.ahead.base <= message.attempt) peer.ahead = undefined;
        peer.reducer.abortRound(message.attempt, message.reason);
        return;
      case "sync":
        // New weights: nothing computed before them counts.
        peer.computed = undefined;
        peer.ahead = undefined;
        this.fetchStateThenReady(peer.id);
        return;
      default:
        return;
    }
  }

  private fetchStateThenReady(id: string): void {
    const peer = this.peers.get(id);
    if (peer === undefined) return;
    this.clock.setTimeout(() => {
      const state = this.coordinator.state;
      this.toServer(id, { type: "ready", peerId: id, round: state.committedRound, hash: state.committedHash, now: 0 });
    }, SimNetwork.transferMs(this.config.stateBytes, peer.volunteer.link.downBps));
  }

  /**
   * Computes `lease` for `round` at the peer's speed, after whatever it is computing now (a worker
   * runs one task at a time).
   */
  private compute(peer: SimPeer, round: number, lease: readonly number[]): Computation {
    const computeMs = ((lease.length * this.samplesPerUnit) / peer.volunteer.samplesPerSecond) * 1000;
    const busyUntil = Math.max(this.clock.now(), peer.computed?.doneAt ?? 0, peer.ahead?.doneAt ?? 0);
    return { round, lease, doneAt: busyUntil + computeMs, computeMs };
  }

  /** Computes the lease (or takes the computation ahead or kept of it), all-reduces, updates, reports. */
  private train(peer: SimPeer, round: Extract<ResolvedCoordinatorMessage, { type: "round" }>): void {
    const same = (c: Computation | undefined): c is Computation => c !== undefined && c.round === round.round && c.lease.length === round.lease.length && c.lease.every((sample, k) => sample === round.lease[k]);
    const reused = same(peer.ahead) ? peer.ahead : same(peer.computed) ? peer.computed : undefined;
    // This round's computation now: kept, should this attempt abort.
    peer.computed = reused ?? this.compute(peer, round.round, round.lease);
    peer.ahead = undefined;
    const { computeMs, doneAt } = peer.computed;
    const waitMs = Math.max(0, doneAt - this.clock.now());
    this.clock.setTimeout(() => {
      // Gone, or the coordinator aborted this attempt while the peer computed (as a worker drops it).
      if (!peer.alive || round.attempt <= peer.abortedUpTo) return;
      this.toServer(peer.id, { type: "phase", peerId: peer.id, attempt: round.attempt, phase: "reducing", now: 0 });
      const started = this.clock.now();
      const args = { attempt: round.attempt, gradient: peer.gradient, samples: round.lease.length, frameBytes: round.frameBytes, codec: this.config.codec };
      reduceByPlan(peer.reducer, round.plan, args).then(
        (result) => {
          const timings = { computeMs, readbackMs: 0, allReduceMs: this.clock.now() - started, updateMs: this.config.updateMs };
          this.clock.setTimeout(() => {
            if (!peer.alive || round.attempt <= peer.abortedUpTo) return;
            this.toServer(peer.id, { type: "result", peerId: peer.id, attempt: round.attempt, hash: hashOf(result.mean), samples: round.lease.length, loss: 1, timings, bytesSent: result.stats.bytesSent, bytesReceived: result.stats.bytesReceived, now: 0 });
            // The next lease, on the weights this update made, while the commit is awaited.
            if (round.next !== undefined && round.next.length > 0) peer.ahead = { ...this.compute(peer, round.round + 1, round.next), base: round.attempt };
          }, this.config.updateMs);
        },
        (error: unknown) => {
          if (!(error instanceof AllReduceError)) {
            this.fatal ??= error;
            return;
          }
          if (error.code === "closed" || error.code === "aborted") return;
          this.toServer(peer.id, { type: "failed", peerId: peer.id, attempt: round.attempt, code: error.code, suspect: error.suspect, message: error.detail, now: 0 });
        },
      );
    }, waitMs);
  }
}

/** 64 hex digits of FNV-1a over the mean's bits: equal means, equal hashes (the members' agreement check). */
function hashOf(mean: Float32Array): string {
  const words = new Uint32Array(mean.buffer, mean.byteOffset, mean.length);
  let h = 0x811c9dc5;
  for (const word of words) h = Math.imul(h ^ word, 0x01000193) >>> 0;
  return h.toString(16).padStart(64, "0");
}

/** A plan as the results name it: "ring", "torus 25x40", "groups 2x2x2x5x5x5+7" (+ the attached members). */
export function planLabel(plan: Plan): string {
  if (plan.kind !== "torus" && plan.kind !== "groups") return plan.kind;
  const { dims, attached } = planGrid(plan);
  return `${plan.kind} ${dims.join("x")}${attached.length > 0 ? `+${attached.length}` : ""}`;
}
