import { AggregationSchema, decodeDirectFrame, encodeDataFrame, FrameKind, type Aggregation, type DirectDataFrame, type DirectFrame, type DirectPlan } from "@crowdtrain/protocol";
import { createRoundHost, sendAborts, type AllReducerCounters } from "../host.ts";
import { systemClock, type Clock, type TimerHandle } from "../clock.ts";
import { AllReduceError, type AllReduceErrorCode } from "../errors.ts";
import { chunkCount, chunkOffsets, partition, type Span } from "../partition.ts";
import { firstNonFinite } from "../reduce.ts";
import type { PeerId, Transport } from "../transport.ts";
import { centeredClip, defaultTrim, trimmedMean, unweightedMean, type Aggregate } from "./aggregators.ts";
import { resolveDirectOptions, type DirectOptions } from "./options.ts";

/**
 * Direct (BTARD-style) all-reduce with robust aggregation.
 *
 * The vector is cut into N shards by the ring's partition; member i of the plan owns shard i.
 *  1. Scatter: every member sends shard i of its own vector straight to member i (DirectScatter
 *     frames, chunked to frameBytes), so the owner sees each contribution separately, which a ring's
 *     running sums never allow.
 *  2. The owner aggregates the N contributions of its shard (its own included) with the plan's rule.
 *  3. Gather: the owner sends its aggregated shard to every other member (DirectGather frames).
 * Each shard's bits come from its one owner, so every member ends with bit-identical vectors.
 * Bytes per member: (N−1)/N·S out in each phase, the same as the ring (S = vector bytes).
 *
 * Contributions are unweighted: each member sends its own mean gradient and counts once. Sample
 * counts are claims; in the ring a claimed 1e9 samples made the mean equal the liar's vector. Here a
 * member cannot buy weight by claiming samples, and one vote per member is what the robust rules'
 * "fewer than half are attackers" bounds are about. (Leases are equal-sized, so honest members'
 * votes are worth the same anyway.)
 */

export type DirectRoundArgs = {
  /** Unique id of this attempt, greater than every earlier one on this all-reducer. */
  attempt: number;
  /** The plan's members (shard owners, in order) and aggregation rule; the same on every member. */
  plan: Pick<DirectPlan, "members" | "aggregation">;
  /** This member's mean gradient; not modified. All members must pass the same length. */
  gradient: Float32Array;
  /** Frame payload size for this round; defaults to the reducer's option. */
  frameBytes?: number;
};

export type ContributorReport = {
  peer: PeerId;
  /** L2 distance of its contribution to the aggregated shard (float64). */
  distance: number;
  /** Clipped by CenteredClip's last iteration, or (trimmed-mean) farther than tau from the result. */
  clipped: boolean;
  /** trimmed-mean: fraction of this shard's coordinates where its value was dropped. */
  trimmedFraction: number;
};

export type OwnShardReport = {
  index: number;
  start: number;
  length: number;
  aggregation: Aggregation;
  /** Clipping radius (centered-clip) or outlier radius of the stats (trimmed-mean); undefined for mean. */
  tau: number | undefined;
  /** One per member, in plan order (this member included). */
  contributors: ContributorReport[];
};

export type DirectRoundStats = {
  attempt: number;
  n: number;
  elements: number;
  framesSent: number;
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  ms: number;
  /** What this member, as the owner of its shard, saw of each contribution: for the coordinator. */
  ownShard: OwnShardReport;
};

export type DirectRoundResult = {
  /** The aggregated vector, bit-identical on every member. */
  mean: Float32Array;
  stats: DirectRoundStats;
};

export interface DirectAllReducer {
  /** Runs one round. Rejects with AllReduceError; never resolves with a partial result. */
  allReduce(args: DirectRoundArgs): Promise<DirectRoundResult>;
  counters(): AllReducerCounters;
  /** Fails the running round of `attempt` with "aborted" without telling peers (the coordinator told everyone). */
  abortRound(attempt: number, reason: string): void;
  /** Fails a running round with "closed" and stops listening to the transport. */
  close(): void;
}

export type DirectAllReducerDeps = {
  /** One transport carries one all-reducer's frames: a ring reducer on the same transport would see these frames too. */
  transport: Transport;
  clock?: Clock;
  options?: Partial<DirectOptions>;
};


/** The direct all-reducer: round isolation from the shared host (host.ts), each round a DirectRun. */
export function createDirectAllReducer(deps: DirectAllReducerDeps): DirectAllReducer {
  const { transport } = deps;
  const clock = deps.clock ?? systemClock();
  const options = resolveDirectOptions(deps.options);
  const host = createRoundHost<DirectFrame, DirectRoundResult>({
    transport,
    decode: decodeDirectFrame,
    maxBufferedFutureBytes: options.maxBufferedFutureBytes,
    name: "direct all-reducer",
  });
  return {
    async allReduce(args) {
      host.checkCanStart(args.attempt);
      validatePlan(args.plan, transport.self);
      const roundOptions = args.frameBytes === undefined ? options : resolveDirectOptions({ ...options, frameBytes: args.frameBytes });
      if (args.plan.aggregation === "trimmed-mean" && roundOptions.trim !== undefined && 2 * roundOptions.trim >= args.plan.members.length) {
        throw new RangeError(`trim ${roundOptions.trim} leaves nothing of ${args.plan.members.length} contributions (needs 2*trim < N)`);
      }
      const bad = firstNonFinite(args.gradient);
      const problem = bad >= 0 ? `own gradient has non-finite value ${args.gradient[bad]} at element ${bad}` : undefined;
      return host.run(new DirectRun(args, transport, clock, roundOptions), problem);
    },
    counters: () => host.counters(),
    abortRound: (attempt, reason) => host.abortRound(attempt, reason),
    close: () => host.close(),
  };
}

function validatePlan(plan: DirectRoundArgs["plan"], self: PeerId): void {
  const { members, aggregation } = plan;
  if (members.length === 0) throw new RangeError("plan has no members");
  if (new Set(members).size !== members.length) throw new RangeError(`plan has a repeated member: ${members.join(",")}`);
  if (!members.includes(self)) throw new RangeError(`plan ${members.join(",")} does not contain this peer ${self}`);
  if (!AggregationSchema.options.includes(aggregation)) throw new RangeError(`unknown aggregation ${String(aggregation)}`);
}

type Outgoing = { kind: typeof FrameKind.DirectScatter | typeof FrameKind.DirectGather; segment: number; offset: number; length: number };
type Link = { queue: Outgoing[]; head: number; pumping: boolean };

/**
 * One direct all-reduce attempt on one member. Owns the contributions to its shard, the result
 * vector, one send queue per destination (a slow link delays only itself; the transport's send
 * promise is the back-pressure) and two timers: the hard round bound and a watchdog armed at the
 * earliest deadline of any member that still owes this member frames.
 */
class DirectRun {
  readonly attempt: number;
  readonly result: Promise<DirectRoundResult>;
  /** Sends of abort notices that failed (the receiver is usually the one that died); kept for diagnosis. */
  readonly abortDeliveryFailures: string[] = [];
  private readonly members: readonly PeerId[];
  private readonly aggregation: Aggregation;
  private readonly n: number;
  private readonly position: number;
  private readonly spans: Span[];
  private readonly chunkElems: number;
  /** This member's own vector, copied so a caller changing it mid-round changes nothing. */
  private readonly own: Float32Array;
  /** N rows of this member's shard, row k = member k's contribution (row `position` is its own). */
  private readonly contributions: Float32Array;
  private readonly resultVector: Float32Array;
  /** Per member: which chunks of its contribution (scatter) and of its aggregated shard (gather) arrived. */
  private readonly seenScatter: Uint8Array[];
  private readonly seenGather: Uint8Array[];
  private readonly owedScatter: number[];
  private readonly owedGather: number[];
  private readonly lastHeard: (number | undefined)[];
  private expectedFrames = 0;
  private aggregated = false;
  private report: OwnShardReport | undefined;
  private readonly links = new Map<PeerId, Link>();
  private finished = false;
  private watchdog: TimerHandle | undefined;
  private watchdogAt = Number.POSITIVE_INFINITY;
  private roundTimer: TimerHandle | undefined;
  private readonly startedAt: number;
  private readonly stats: Omit<DirectRoundStats, "ms" | "ownShard">;
  private resolve!: (result: DirectRoundResult) => void;
  private reject!: (error: AllReduceError) => void;

  constructor(
    args: DirectRoundArgs,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly options: DirectOptions,
  ) {
    this.result = new Promise<DirectRoundResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.attempt = args.attempt;
    this.members = args.plan.members;
    this.aggregation = args.plan.aggregation;
    this.n = this.members.length;
    this.position = this.members.indexOf(transport.self);
    this.chunkElems = options.frameBytes / 4;
    this.own = args.gradient.slice();
    this.spans = partition(this.own.length, this.n);
    const mine = this.span(this.position);
    this.contributions = new Float32Array(this.n * mine.length);
    this.contributions.set(this.own.subarray(mine.start, mine.start + mine.length), this.position * mine.length);
    this.resultVector = new Float32Array(this.own.length);
    this.seenScatter = [];
    this.seenGather = [];
    this.owedScatter = [];
    this.owedGather = [];
    this.lastHeard = [];
    const myChunks = chunkCount(mine.length, this.chunkElems);
    for (let k = 0; k < this.n; k++) {
      const self = k === this.position;
      const theirChunks = chunkCount(this.span(k).length, this.chunkElems);
      this.seenScatter.push(new Uint8Array(self ? 0 : myChunks));
      this.seenGather.push(new Uint8Array(self ? 0 : theirChunks));
      this.owedScatter.push(self ? 0 : myChunks);
      this.owedGather.push(self ? 0 : theirChunks);
      this.lastHeard.push(undefined);
      if (!self) this.expectedFrames += myChunks + theirChunks;
    }
    this.startedAt = clock.now();
    this.stats = { attempt: args.attempt, n: this.n, elements: this.own.length, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  }

  start(): void {
    if (this.n > 1) {
      this.roundTimer = this.clock.setTimeout(() => this.onRoundTimeout(), this.options.roundTimeoutMs);
      // Rotate destinations so members do not all start on member 0; each link has its own queue anyway.
      for (let step = 1; step < this.n; step++) {
        const owner = (this.position + step) % this.n;
        for (const offset of chunkOffsets(this.span(owner).length, this.chunkElems)) this.enqueue(owner, FrameKind.DirectScatter, owner, offset);
      }
      this.armWatchdog();
    }
    this.maybeAggregate();
    this.maybeComplete();
  }

  handleFrame(from: PeerId, frame: DirectFrame, bytes: number): void {
    if (this.finished) return;
    if (frame.kind === FrameKind.Abort) {
      if (!this.members.includes(from)) return; // only members may abort; a stranger's abort is ignored, not obeyed
      this.fail("aborted", frame.suspect, `peer ${from} aborted the round: ${frame.reason}`, true, from);
      return;
    }
    const problem = this.validate(from, frame);
    if (problem !== undefined) {
      this.fail("bad-frame", from, problem, true);
      return;
    }
    const sender = this.members.indexOf(from);
    const chunk = frame.offset / this.chunkElems;
    this.stats.framesReceived++;
    this.stats.bytesReceived += bytes;
    this.expectedFrames--;
    this.lastHeard[sender] = this.clock.now();
    if (frame.kind === FrameKind.DirectScatter) {
      (this.seenScatter[sender] as Uint8Array)[chunk] = 1;
      this.owedScatter[sender] = (this.owedScatter[sender] as number) - 1;
      this.contributions.set(frame.payload, sender * this.span(this.position).length + frame.offset);
      this.maybeAggregate();
    } else {
      (this.seenGather[sender] as Uint8Array)[chunk] = 1;
      this.owedGather[sender] = (this.owedGather[sender] as number) - 1;
      this.resultVector.set(frame.payload, this.span(sender).start + frame.offset);
    }
    // A sender that was waiting on its first frame now has the shorter progress deadline.
    const deadline = this.deadlineOf(sender);
    if (deadline !== undefined && deadline.at < this.watchdogAt) this.armWatchdog();
    this.maybeComplete();
  }

  handlePeerGone(peer: PeerId, reason: string): void {
    if (this.finished || !this.members.includes(peer) || peer === this.transport.self) return;
    this.fail("peer-gone", peer, `link to ${peer} closed: ${reason}`, true, peer);
  }

  /** A member sent something undecodable: it is named, and the round fails everywhere. */
  handlePeerViolation(from: PeerId, problem: string): void {
    if (this.finished || !this.members.includes(from)) return;
    this.fail("bad-frame", from, problem, true);
  }

  abortLocally(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean): void {
    this.fail(code, suspect, message, notifyPeers);
  }

  private validate(from: PeerId, frame: DirectDataFrame): string | undefined {
    const sender = this.members.indexOf(from);
    if (sender < 0) return `data frame from ${from}, which is not a member of this direct plan`;
    if (sender === this.position) return `data frame from this member itself`;
    let segment: number;
    let seen: Uint8Array;
    if (frame.kind === FrameKind.DirectScatter) {
      if (frame.segment !== this.position) return `scatter frame for shard ${frame.segment}, but this member owns shard ${this.position}`;
      segment = this.position;
      seen = this.seenScatter[sender] as Uint8Array;
    } else {
      if (frame.segment !== sender) return `gather frame for shard ${frame.segment}, but ${from} owns shard ${sender}`;
      segment = sender;
      seen = this.seenGather[sender] as Uint8Array;
    }
    const shardLength = this.span(segment).length;
    if (frame.offset % this.chunkElems !== 0 || frame.offset >= shardLength) {
      return `offset ${frame.offset} is not a chunk start inside shard ${segment} of ${shardLength} elements`;
    }
    const wanted = Math.min(this.chunkElems, shardLength - frame.offset);
    if (frame.payload.length !== wanted) return `chunk at offset ${frame.offset} of shard ${segment} has ${frame.payload.length} elements, expected ${wanted}`;
    const kind = frame.kind === FrameKind.DirectScatter ? "scatter" : "gather";
    if (seen[frame.offset / this.chunkElems] === 1) return `duplicate ${kind} chunk at offset ${frame.offset} of shard ${segment}`;
    const bad = firstNonFinite(frame.payload);
    if (bad >= 0) return `non-finite value ${frame.payload[bad]} at element ${frame.offset + bad} of shard ${segment}`;
    return undefined;
  }

  /** Once every contribution to this member's shard is in: aggregate it and send it to everyone. */
  private maybeAggregate(): void {
    if (this.finished || this.aggregated) return;
    for (let k = 0; k < this.n; k++) if ((this.owedScatter[k] as number) > 0) return;
    this.aggregated = true;
    const mine = this.span(this.position);
    const rows: Float32Array[] = [];
    for (let k = 0; k < this.n; k++) rows.push(this.contributions.subarray(k * mine.length, (k + 1) * mine.length));
    const outcome = this.aggregate(rows);
    this.resultVector.set(outcome.value, mine.start);
    this.report = {
      index: this.position,
      start: mine.start,
      length: mine.length,
      aggregation: this.aggregation,
      tau: outcome.tau,
      contributors: outcome.contributors.map((c) => ({
        peer: this.members[c.index] as PeerId,
        distance: c.distance,
        clipped: c.clipped,
        trimmedFraction: c.trimmedFraction,
      })),
    };
    for (let step = 1; step < this.n; step++) {
      const to = (this.position + step) % this.n;
      for (const offset of chunkOffsets(mine.length, this.chunkElems)) this.enqueue(to, FrameKind.DirectGather, this.position, offset);
    }
  }

  private aggregate(rows: Float32Array[]): Aggregate {
    switch (this.aggregation) {
      case "mean":
        return unweightedMean(rows);
      case "trimmed-mean":
        return trimmedMean(rows, this.options.trim ?? defaultTrim(this.n));
      case "centered-clip":
        return centeredClip(rows, { iterations: this.options.clipIterations, tauFactor: this.options.tauFactor });
    }
  }

  private enqueue(to: number, kind: Outgoing["kind"], segment: number, offset: number): void {
    const peer = this.members[to] as PeerId;
    let link = this.links.get(peer);
    if (link === undefined) {
      link = { queue: [], head: 0, pumping: false };
      this.links.set(peer, link);
    }
    link.queue.push({ kind, segment, offset, length: Math.min(this.chunkElems, this.span(segment).length - offset) });
    if (!link.pumping) void this.pump(peer, link);
  }

  /** Sends one link's queue in order, one transport.send at a time; frames are encoded only when sent. */
  private async pump(peer: PeerId, link: Link): Promise<void> {
    link.pumping = true;
    while (link.head < link.queue.length && !this.finished) {
      const item = link.queue[link.head++] as Outgoing;
      const source = item.kind === FrameKind.DirectScatter ? this.own : this.resultVector;
      const start = this.span(item.segment).start + item.offset;
      const bytes = encodeDataFrame(
        { kind: item.kind, attempt: this.attempt, step: 0, segment: item.segment, offset: item.offset },
        source.subarray(start, start + item.length),
      );
      this.stats.framesSent++;
      this.stats.bytesSent += bytes.byteLength;
      try {
        await this.transport.send(peer, bytes);
      } catch (error) {
        this.fail("peer-gone", peer, `send to ${peer} failed: ${String(error)}`, true, peer);
      }
    }
    link.pumping = false;
    this.maybeComplete();
  }

  private maybeComplete(): void {
    if (this.finished || !this.aggregated || this.expectedFrames > 0) return;
    for (const link of this.links.values()) if (link.pumping || link.head < link.queue.length) return;
    this.finish();
    this.resolve({
      mean: this.resultVector,
      stats: { ...this.stats, ms: this.clock.now() - this.startedAt, ownShard: this.report as OwnShardReport },
    });
  }

  /** When `sender` must next be heard from, and under which named timeout; undefined if it owes nothing. */
  private deadlineOf(sender: number): { at: number; name: string; ms: number } | undefined {
    const heard = this.lastHeard[sender];
    const { startTimeoutMs, progressTimeoutMs, resultTimeoutMs } = this.options;
    if ((this.owedScatter[sender] as number) > 0) {
      return heard === undefined
        ? { at: this.startedAt + startTimeoutMs, name: "startTimeoutMs", ms: startTimeoutMs }
        : { at: heard + progressTimeoutMs, name: "progressTimeoutMs", ms: progressTimeoutMs };
    }
    if ((this.owedGather[sender] as number) > 0) {
      // Never heard means it owed this member no contribution (this shard is empty): it may have
      // started up to startTimeoutMs later than this member, so its result clock starts then.
      const base = heard ?? this.startedAt + startTimeoutMs;
      return { at: base + resultTimeoutMs, name: "resultTimeoutMs", ms: resultTimeoutMs };
    }
    return undefined;
  }

  private armWatchdog(): void {
    if (this.watchdog !== undefined) this.clock.clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.watchdogAt = Number.POSITIVE_INFINITY;
    if (this.finished) return;
    for (let k = 0; k < this.n; k++) {
      const deadline = this.deadlineOf(k);
      if (deadline !== undefined && deadline.at < this.watchdogAt) this.watchdogAt = deadline.at;
    }
    if (this.watchdogAt === Number.POSITIVE_INFINITY) return;
    this.watchdog = this.clock.setTimeout(() => this.onWatchdog(), Math.max(0, this.watchdogAt - this.clock.now()));
  }

  /**
   * Names the member that is overdue. A contributor that owes its contribution is named before an
   * owner that owes its result: the owner may be waiting for that same contributor.
   */
  private onWatchdog(): void {
    this.watchdog = undefined;
    if (this.finished) return;
    const now = this.clock.now();
    let culprit: { k: number; at: number; name: string; ms: number; contributor: boolean } | undefined;
    for (let k = 0; k < this.n; k++) {
      const deadline = this.deadlineOf(k);
      if (deadline === undefined || deadline.at > now) continue;
      const contributor = (this.owedScatter[k] as number) > 0;
      if (culprit === undefined || (contributor && !culprit.contributor) || (contributor === culprit.contributor && deadline.at < culprit.at)) {
        culprit = { k, ...deadline, contributor };
      }
    }
    if (culprit === undefined) {
      this.armWatchdog(); // frames arrived since it was armed: every deadline moved later
      return;
    }
    const peer = this.members[culprit.k] as PeerId;
    const what = culprit.contributor ? `its contribution to shard ${this.position}` : `its aggregated shard ${culprit.k}`;
    this.fail("timeout", peer, `${peer} still owes ${what} and sent nothing for ${culprit.name}=${culprit.ms}`, true);
  }

  private onRoundTimeout(): void {
    this.roundTimer = undefined;
    let suspect: PeerId | undefined;
    for (const owed of [this.owedScatter, this.owedGather]) {
      const k = owed.findIndex((count) => count > 0);
      if (suspect === undefined && k >= 0) suspect = this.members[k];
    }
    if (suspect === undefined) {
      for (const [peer, link] of this.links) if (suspect === undefined && (link.pumping || link.head < link.queue.length)) suspect = peer;
    }
    this.fail("timeout", suspect, `round exceeded roundTimeoutMs=${this.options.roundTimeoutMs}`, true);
  }

  private fail(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean, skip?: PeerId): void {
    if (this.finished) return;
    this.finish();
    if (notifyPeers && this.n > 1) {
      // Every member hears it directly (there are no neighbours to forward through), and forwards it
      // once, so a notice cut short by the failing member's death still reaches everyone.
      sendAborts(this.transport, { attempt: this.attempt, suspect, reason: `${code}: ${message}` }, this.members, skip, this.abortDeliveryFailures);
    }
    this.reject(new AllReduceError(code, this.attempt, suspect === "" ? undefined : suspect, message));
  }

  private finish(): void {
    this.finished = true;
    if (this.watchdog !== undefined) this.clock.clearTimeout(this.watchdog);
    if (this.roundTimer !== undefined) this.clock.clearTimeout(this.roundTimer);
    this.watchdog = undefined;
    this.roundTimer = undefined;
    this.watchdogAt = Number.POSITIVE_INFINITY;
  }

  private span(index: number): Span {
    return this.spans[index] as Span;
  }
}
