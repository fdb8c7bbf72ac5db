import { FrameKind, gridDimOf, gridStage, RingStage, type Codec, type DataFrame, type Frame } from "@crowdtrain/protocol";
import type { Clock, TimerHandle } from "./clock.ts";
import { AllReduceError, type AllReduceErrorCode } from "./errors.ts";
import { sendAborts, type HostedRun } from "./host.ts";
import type { AllReduceOptions } from "./options.ts";
import { partition, type Span } from "./partition.ts";
import { addIntoFinite, weightedContribution } from "./reduce.ts";
import { SumWork } from "./ring-sum.ts";
import { attachFrames, VectorReceiver } from "./torus-attach.ts";
import type { WorkResult } from "./ring-work.ts";
import { chunkCodecOf, RoundRun, type RingSpec, type RoundResult, type RoundStats } from "./round.ts";
import { leftOf, rightOf } from "./schedule.ts";
import { guestStartMs } from "./torus.ts";
import type { PeerId, Transport } from "./transport.ts";

export type GridRoundArgs = {
  /** Unique id of this attempt, greater than every earlier one on this all-reducer. */
  attempt: number;
  /**
   * The grid's members in mixed-radix order, the same on every member: member p sits at coordinate
   * ⌊p / stride_k⌋ mod dims[k] along dimension k (stride_0 = 1, stride_k = dims[0]·…·dims[k−1]), so
   * dimension 0's groups are runs of dims[0] consecutive members (a torus's rows).
   */
  members: readonly PeerId[];
  /** Group size along each dimension, at least two dimensions: members.length is their product. */
  dims: readonly number[];
  /** Members attached to the grid, at most one per dimension-0 group: the i-th to members[i·dims[0]] (torus-attach.ts). */
  attached?: readonly PeerId[];
  /** This peer's gradient; not modified. All members must pass the same length. */
  gradient: Float32Array;
  /** Samples the gradient was averaged over: its weight in the mean. */
  samples: number;
  frameBytes?: number;
  /** A summing codec (topk's sparse blocks are not summed on the way). */
  codec?: Exclude<Codec, "topk">;
  /** What errors call the round ("torus" for the two-dimensional grid of a torus plan). */
  label?: string;
};

type Held = { from: PeerId; frame: DataFrame; bytes: number };
// Any ring's result carries its stats; what else it yields is the stage's business.
type AnyRun = RoundRun<object>;

/**
 * One grid all-reduce attempt on one peer: a d-dimensional grid (Moshpit SGD's grid of groups,
 * Ryabinin et al. 2021, averaged exactly: "if all peers are in the grid, d group rounds give the
 * global average") run as 2(d−1) + 1 group rings in sequence:
 * - scatter along dimensions 0 .. d−2: each is its group's ring reduce-scatter of the span this member
 *   owns, which leaves it owning its group's sum of one part of that span (1/g of it);
 * - all-reduce along dimension d−1 of the smallest span: its group ends with the grid's sum of it,
 *   bit-identical;
 * - gather back along dimensions d−2 .. 0: each group's ring all-gather of the spans its members own.
 * Steps: Σ 2(g_k − 1) instead of the flat ring's 2(N − 1) (30 instead of 1,998 at 1,000 = 2³·5³), for
 * the flat ring's bytes per member (each dimension moves (g_k−1)/g_k of the span it works on, twice);
 * a member talks to at most two peers per dimension. A torus is the grid [X, Y].
 *
 * Same bits everywhere: the last dimension's ring gives its group bit-identical sums; every gather's
 * owner encodes its span once and adopts decode(encode(span)) itself, so its group decodes the same
 * bytes, and members owning the same span encode the same bits into the same bytes. With a lossy codec
 * a value is encoded at most Σ g_k + d − 1 times on its way.
 *
 * Each stage is a RoundRun (round.ts) over its group's ring; the frame's stage byte names the
 * dimension (gridStage) and its kind tells a scatter from a gather (the last dimension's ring has
 * both). Frames of a later stage that arrive first are held, within maxBufferedFutureBytes; a frame of
 * a stage that already finished is a violation. Failure is all or nothing, for the whole attempt: this
 * run owns it (the rings do not) and tells its neighbours in every dimension, who tell theirs.
 */
export class GridRun implements HostedRun<Frame, RoundResult> {
  readonly attempt: number;
  readonly result: Promise<RoundResult>;
  private readonly members: ReadonlySet<PeerId>;
  private readonly dims: readonly number[];
  /** This member's group along each dimension, in ring order. */
  private readonly groups: (readonly PeerId[])[];
  /** This member's coordinate along each dimension (its place in that group). */
  private readonly coords: number[];
  /** spans[k]: the span of the whole contribution this member works on along dimension k (spans[0] is all of it). */
  private readonly spans: Span[];
  private readonly codec: Exclude<Codec, "topk">;
  private readonly frameBytes: number;
  private readonly label: string;
  /** The member attached to this one, if any. */
  private readonly guest: PeerId | undefined;
  private readonly guestUpload: VectorReceiver | undefined;
  private guestTimer: TimerHandle | undefined;
  /** The running stage: 0 .. d−2 scatter, d−1 the all-reduce, d .. 2d−2 gather (dimension 2d−2−stage). */
  private current: { stage: number; run: AnyRun } | undefined;
  private readonly held: Held[][];
  private heldBytes = 0;
  private finished = false;
  private roundTimer: TimerHandle | undefined;
  private readonly startedAt: number;
  private readonly stats: Omit<RoundStats, "ms">;
  private resolve!: (result: RoundResult) => void;
  private reject!: (error: AllReduceError) => void;
  readonly abortDeliveryFailures: string[] = [];

  constructor(
    private readonly args: GridRoundArgs,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly options: AllReduceOptions,
  ) {
    this.result = new Promise<RoundResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.attempt = args.attempt;
    this.dims = args.dims;
    this.label = args.label ?? "grid";
    this.members = new Set([...args.members, ...(args.attached ?? [])]);
    const at = args.members.indexOf(transport.self);
    this.groups = [];
    this.coords = [];
    let stride = 1;
    for (const size of this.dims) {
      const coord = Math.floor(at / stride) % size;
      const base = at - coord * stride;
      this.coords.push(coord);
      this.groups.push(Array.from({ length: size }, (_, i) => args.members[base + i * stride] as PeerId));
      stride *= size;
    }
    this.spans = [{ start: 0, length: args.gradient.length + 1 }];
    for (let k = 0; k + 1 < this.dims.length; k++) {
      const span = this.spans[k] as Span;
      const part = partition(span.length, this.dims[k] as number)[this.coords[k] as number] as Span;
      this.spans.push({ start: span.start + part.start, length: part.length });
    }
    this.held = Array.from({ length: 2 * this.dims.length - 1 }, () => []);
    this.codec = args.codec ?? "dense";
    this.frameBytes = args.frameBytes ?? options.frameBytes;
    this.guest = at % (this.dims[0] as number) === 0 ? args.attached?.[at / (this.dims[0] as number)] : undefined;
    this.guestUpload = this.guest === undefined ? undefined : new VectorReceiver(args.gradient.length + 1, this.frameBytes, FrameKind.ReduceScatter);
    this.startedAt = clock.now();
    this.stats = { attempt: args.attempt, n: this.members.size, elements: args.gradient.length, codec: this.codec, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  }

  start(): void {
    this.roundTimer = this.clock.setTimeout(() => this.fail("timeout", undefined, `${this.label} round exceeded roundTimeoutMs=${this.options.roundTimeoutMs}`, true), this.options.roundTimeoutMs);
    // A host's first group starts once its attached member's contribution is in (handleGuestFrame).
    if (this.guestUpload === undefined) this.beginScatter(0, weightedContribution(this.args.gradient, this.args.samples));
    else this.armGuestTimer("ringStartTimeoutMs - progressTimeoutMs", guestStartMs(this.options));
  }

  handleFrame(from: PeerId, frame: Frame, bytes: number): void {
    if (this.finished) return;
    if (frame.kind === FrameKind.Abort) {
      if (!this.members.has(from)) return; // only members may abort; a stranger's abort is ignored, not obeyed
      this.fail("aborted", frame.suspect === "" ? undefined : frame.suspect, `peer ${from} aborted the round: ${frame.reason}`, true, from);
      return;
    }
    if (frame.stage === RingStage.Ring) {
      this.fail("bad-frame", from, `a flat ring frame (stage 0) in a ${this.label} round`, true);
      return;
    }
    if (frame.stage === RingStage.TorusAttach) {
      this.handleGuestFrame(from, frame, bytes);
      return;
    }
    const dim = gridDimOf(frame.stage) as number;
    if (dim >= this.dims.length) {
      this.fail("bad-frame", from, `a frame of dimension ${dim} in a ${this.dims.length}-dimensional ${this.label} round`, true);
      return;
    }
    const last = this.dims.length - 1;
    const stage = dim === last ? last : frame.kind === FrameKind.ReduceScatter ? dim : 2 * last - dim;
    const now = this.current?.stage ?? -1;
    if (stage === now) this.current?.run.handleFrame(from, frame, bytes);
    else if (stage < now) this.fail("bad-frame", from, `a ${this.stageName(stage)} frame after this member's ${this.stageName(stage)} ring finished`, true);
    else this.hold(from, frame, bytes, stage);
  }

  handlePeerGone(peer: PeerId, reason: string): void {
    if (this.finished || !this.members.has(peer) || peer === this.transport.self) return;
    this.fail("peer-gone", peer, `link to ${peer} closed: ${reason}`, true, peer);
  }

  handlePeerViolation(from: PeerId, problem: string): void {
    if (this.finished || !this.members.has(from)) return;
    this.fail("bad-frame", from, problem, true);
  }

  abortLocally(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean): void {
    this.fail(code, suspect, message, notifyPeers);
  }

  /** A torus's stages keep their row and column names; a deeper grid's are named by dimension. */
  private stageName(stage: number): string {
    const last = this.dims.length - 1;
    if (this.dims.length === 2) return (["row-scatter", "column", "row-gather"] as const)[stage] as string;
    return stage < last ? `dimension ${stage} scatter` : stage === last ? `dimension ${last} all-reduce` : `dimension ${2 * last - stage} gather`;
  }

  /** A chunk of the attached member's contribution: once all are in, it joins this member's and the first scatter starts. */
  private handleGuestFrame(from: PeerId, frame: DataFrame, bytes: number): void {
    if (from !== this.guest || this.guestUpload === undefined) {
      this.fail("bad-frame", from, `an attach frame from ${from}, which is not attached to this member`, true);
      return;
    }
    const problem = this.guestUpload.accept(frame);
    if (problem !== undefined) {
      this.fail("bad-frame", from, problem, true);
      return;
    }
    this.stats.framesReceived++;
    this.stats.bytesReceived += bytes;
    if (!this.guestUpload.complete) {
      this.armGuestTimer("progressTimeoutMs", this.options.progressTimeoutMs);
      return;
    }
    this.clearGuestTimer();
    const own = weightedContribution(this.args.gradient, this.args.samples);
    const overflow = addIntoFinite(own, 0, this.guestUpload.values);
    if (overflow >= 0) {
      this.fail("bad-frame", from, `adding its contribution to this member's overflows float32 at element ${overflow}`, true);
      return;
    }
    this.beginScatter(0, own);
  }

  private armGuestTimer(name: string, ms: number): void {
    this.clearGuestTimer();
    const guest = this.guest as PeerId;
    this.guestTimer = this.clock.setTimeout(() => this.fail("timeout", guest, `nothing from attached member ${guest} for ${name}=${ms}`, true), ms);
  }

  private clearGuestTimer(): void {
    if (this.guestTimer !== undefined) this.clock.clearTimeout(this.guestTimer);
    this.guestTimer = undefined;
  }

  /** Whether span k holds the contribution's last element, the sample count, which travels exact. */
  private hasTail(k: number): boolean {
    const span = this.spans[k] as Span;
    return span.length > 0 && span.start + span.length === this.args.gradient.length + 1;
  }

  /** Reduce-scatters `values` (span k) along dimension k; the last dimension all-reduces instead. */
  private beginScatter(k: number, values: Float32Array): void {
    const last = this.dims.length - 1;
    const work = new SumWork(values, this.dims[k] as number, chunkCodecOf(this.codec), this.frameBytes, this.hasTail(k));
    if (k === last) {
      this.begin(k, this.spec(k, work, ["reduce-scatter", "all-gather"], () => ({ sums: work.finalSums() })), ({ sums }) => this.beginGather(k - 1, sums));
      return;
    }
    const coord = this.coords[k] as number;
    this.begin(k, this.spec(k, work, ["reduce-scatter"], () => ({ owned: work.accumulated(coord).slice() })), ({ owned }) => this.beginScatter(k + 1, owned));
  }

  /** All-gathers span k along dimension k from the sums of span k+1 this member holds; dimension 0's is the last stage. */
  private beginGather(k: number, sums: Float32Array): void {
    const span = this.spans[k] as Span;
    const vector = new Float32Array(span.length);
    vector.set(sums, (this.spans[k + 1] as Span).start - span.start);
    const work = new SumWork(vector, this.dims[k] as number, chunkCodecOf(this.codec), this.frameBytes, this.hasTail(k));
    const stage = 2 * (this.dims.length - 1) - k;
    if (k > 0) {
      this.begin(stage, this.spec(k, work, ["all-gather"], () => ({ sums: work.finalSums() })), (outcome) => this.beginGather(k - 1, outcome.sums));
      return;
    }
    // The final sums, before result() divides them in place: what an attached member is sent.
    const complete = (): (WorkResult & { sums: Float32Array | undefined }) | { noSamples: true } => {
      const finalSums = this.guest === undefined ? undefined : work.finalSums().slice();
      const outcome = work.result();
      return "noSamples" in outcome ? outcome : { ...outcome, sums: finalSums };
    };
    this.begin(stage, this.spec(0, work, ["all-gather"], complete), (outcome) => void this.complete(outcome));
  }

  private spec<O>(dim: number, work: SumWork, phases: RingSpec<O>["phases"], complete: () => O | { noSamples: true }): RingSpec<O> {
    return { attempt: this.attempt, ring: this.groups[dim] as readonly PeerId[], stage: gridStage(dim), codec: this.codec, work, phases, elements: this.args.gradient.length, complete, ownsFailure: false };
  }

  /** Starts a stage's ring, hands it the frames held for it, and goes on with `next` when it is done. */
  private begin<O extends object>(stage: number, spec: RingSpec<O>, next: (outcome: O) => void): void {
    if (this.finished) return;
    const run = new RoundRun<O>(spec, this.transport, this.clock, this.options);
    this.current = { stage, run: run as unknown as AnyRun };
    run.result.then(
      (outcome) => {
        if (this.finished) return;
        this.addStats(outcome.stats);
        next(outcome);
      },
      (error: unknown) => this.stageFailed(stage, error),
    );
    run.start();
    const held = (this.held[stage] as Held[]).splice(0);
    for (const item of held) {
      this.heldBytes -= item.bytes;
      run.handleFrame(item.from, item.frame, item.bytes);
    }
  }

  /** Sends the attached member its result (if any), then resolves: the attempt is done for this member only once its guest has it. */
  private async complete({ sums, ...outcome }: WorkResult & { sums: Float32Array | undefined }): Promise<void> {
    if (sums !== undefined && this.guest !== undefined) {
      for (const frame of attachFrames(this.attempt, FrameKind.AllGather, sums, this.frameBytes)) {
        if (this.finished) return;
        this.stats.framesSent++;
        this.stats.bytesSent += frame.byteLength;
        try {
          await this.transport.send(this.guest, frame);
        } catch (error) {
          this.fail("peer-gone", this.guest, `send to attached member ${this.guest} failed: ${String(error)}`, true, this.guest);
          return;
        }
      }
    }
    if (this.finished) return;
    this.finish();
    this.resolve({ ...outcome, stats: { ...this.stats, ms: this.clock.now() - this.startedAt } });
  }

  private stageFailed(stage: number, error: unknown): void {
    if (this.finished) return;
    if (!(error instanceof AllReduceError)) {
      this.fail("bad-input", this.transport.self, `the ${this.stageName(stage)} ring threw: ${String(error)}`, true);
      return;
    }
    // Every grid member sees the same zero total, so all fail alike and only an attached member needs telling.
    this.fail(error.code, error.suspect, `${this.stageName(stage)} ring: ${error.detail}`, error.code !== "no-samples");
  }

  private hold(from: PeerId, frame: DataFrame, bytes: number, stage: number): void {
    if (this.heldBytes + bytes > this.options.maxBufferedFutureBytes) {
      this.fail("bad-frame", from, `sent more ${this.stageName(stage)} frames ahead of this member than maxBufferedFutureBytes`, true);
      return;
    }
    // The handler's bytes are only lent: keep a copy of the payload.
    (this.held[stage] as Held[]).push({ from, frame: { ...frame, payload: frame.payload.slice() }, bytes });
    this.heldBytes += bytes;
  }

  private addStats(stats: RoundStats): void {
    this.stats.framesSent += stats.framesSent;
    this.stats.bytesSent += stats.bytesSent;
    this.stats.framesReceived += stats.framesReceived;
    this.stats.bytesReceived += stats.bytesReceived;
  }

  /** The neighbours an abort goes to: left and right in this member's group along every dimension, and an attached member. */
  private neighbours(): Set<PeerId> {
    const told = new Set<PeerId>();
    for (const [k, group] of this.groups.entries()) {
      const coord = this.coords[k] as number;
      told.add(group[leftOf(coord, group.length)] as PeerId);
      told.add(group[rightOf(coord, group.length)] as PeerId);
    }
    if (this.guest !== undefined) told.add(this.guest);
    return told;
  }

  private fail(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean, skip?: PeerId): void {
    if (this.finished) return;
    this.finish();
    this.current?.run.abortLocally("aborted", suspect, message, false);
    // An attached member hears of the grid only through this one: it is told even when the grid is not.
    const told = notifyPeers ? this.neighbours() : new Set(this.guest === undefined ? [] : [this.guest]);
    sendAborts(this.transport, { attempt: this.attempt, suspect, reason: `${code}: ${message}` }, told, skip, this.abortDeliveryFailures);
    this.reject(new AllReduceError(code, this.attempt, suspect, message));
  }

  private finish(): void {
    this.finished = true;
    if (this.roundTimer !== undefined) this.clock.clearTimeout(this.roundTimer);
    this.roundTimer = undefined;
    this.clearGuestTimer();
    for (const held of this.held) held.length = 0;
    this.heldBytes = 0;
  }
}
