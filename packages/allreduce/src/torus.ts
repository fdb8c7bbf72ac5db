import { FrameKind, RingStage, type Codec, type DataFrame, type Frame } from "@crowdtrain/protocol";
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
import type { PeerId, Transport } from "./transport.ts";

export type TorusRoundArgs = {
  /** Unique id of this attempt, greater than every earlier one on this all-reducer. */
  attempt: number;
  /** The grid, row by row, the same on every member: every row the same length, each member once. */
  rows: readonly (readonly PeerId[])[];
  /** Members attached to the grid, at most one per row: the i-th to the first member of row i (torus-attach.ts). */
  attached?: readonly PeerId[];
  /** This peer's gradient; not modified. All members must pass the same length. */
  gradient: Float32Array;
  /** Samples the gradient was averaged over: its weight in the mean. */
  samples: number;
  frameBytes?: number;
  /** A summing codec (topk's sparse blocks are not summed on the way, so they gain nothing from a torus). */
  codec?: Exclude<Codec, "topk">;
};

/**
 * How long a host waits for its attached member's first chunk. Its row neighbours wait
 * ringStartTimeoutMs for the host's first frame, which cannot leave before that contribution is in:
 * the host must name a silent guest first, or they would name the host. progressTimeoutMs earlier
 * leaves its abort time to arrive (so ringStartTimeoutMs should be at least twice progressTimeoutMs;
 * with the defaults, 25 s against 30 s).
 */
export function guestStartMs(options: Pick<AllReduceOptions, "ringStartTimeoutMs" | "progressTimeoutMs">): number {
  return Math.max(options.progressTimeoutMs, options.ringStartTimeoutMs - options.progressTimeoutMs);
}

/** The three rings of a torus attempt, in the order they run. */
const STAGES = ["row-scatter", "column", "row-gather"] as const;
type Stage = (typeof STAGES)[number];
type Held = { from: PeerId; frame: DataFrame; bytes: number };
// Any ring's result carries its stats; what else it yields is the stage's business.
type AnyRun = RoundRun<object>;

/**
 * One torus all-reduce attempt on one peer: a 2D grid of X columns by Y rows averaged in three
 * rings (Patarasuk & Yuan's ring, run twice over: "2D-torus all-reduce", Mikami et al. 2018):
 * 1. row reduce-scatter: the member in column c ends owning its row's sum of segment c (X segments);
 * 2. column all-reduce of segment c among the Y members of column c: every one of them ends with
 *    the whole grid's sum of segment c, bit-identical (a ring all-reduce is);
 * 3. row all-gather: each member's segment goes round its row as the bytes its owner encoded.
 * Steps: 2(X−1) + 2(Y−1) instead of the flat ring's 2(XY−1) (36 instead of 198 at 10×10), for the
 * flat ring's bytes per member: 2(X−1)/X·S in the rows plus 2(Y−1)/(XY)·S in the column is
 * 2(XY−1)/(XY)·S (S the vector's bytes), up to the segments' rounding and more frame headers.
 *
 * Same bits everywhere: within a column the segment's sums are bit-identical (stage 2); the row
 * gather's owner encodes them once and adopts decode(encode(sums)) itself, so every member decodes
 * the same bytes, and two members of the same column encode the same bits into the same bytes.
 *
 * Each stage is a RoundRun (round.ts) over its own ring with its own frames (the frame's stage byte
 * and kind tell them apart, since step, segment and offset restart in each ring). Frames of a later
 * stage that arrive first (a neighbour ran ahead) are held, within maxBufferedFutureBytes; a frame of
 * a stage that already finished is a violation. Failure is all or nothing, for the whole attempt:
 * this run owns it (the rings do not), and tells its four neighbours, who tell theirs, so an abort
 * reaches every member of the grid.
 */
export class TorusRun implements HostedRun<Frame, RoundResult> {
  readonly attempt: number;
  readonly result: Promise<RoundResult>;
  private readonly members: ReadonlySet<PeerId>;
  private readonly row: readonly PeerId[];
  private readonly column: readonly PeerId[];
  private readonly columnIndex: number;
  private readonly codec: Exclude<Codec, "topk">;
  private readonly frameBytes: number;
  /** The contribution's cut into the row's X segments (its last element is the sample count). */
  private readonly segments: Span[];
  /** The member attached to this one (the first of its row), if any. */
  private readonly guest: PeerId | undefined;
  private readonly guestUpload: VectorReceiver | undefined;
  private guestTimer: TimerHandle | undefined;
  private current: { stage: Stage; run: AnyRun } | undefined;
  private readonly held: Record<Stage, Held[]> = { "row-scatter": [], column: [], "row-gather": [] };
  private heldBytes = 0;
  private finished = false;
  private roundTimer: TimerHandle | undefined;
  private readonly startedAt: number;
  private readonly stats: Omit<RoundStats, "ms">;
  private resolve!: (result: RoundResult) => void;
  private reject!: (error: AllReduceError) => void;
  readonly abortDeliveryFailures: string[] = [];

  constructor(
    private readonly args: TorusRoundArgs,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly options: AllReduceOptions,
  ) {
    this.result = new Promise<RoundResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.attempt = args.attempt;
    const self = transport.self;
    this.members = new Set([...args.rows.flat(), ...(args.attached ?? [])]);
    const rowIndex = args.rows.findIndex((row) => row.includes(self));
    this.row = args.rows[rowIndex] as readonly PeerId[];
    this.columnIndex = this.row.indexOf(self);
    this.column = args.rows.map((row) => row[this.columnIndex] as PeerId);
    this.codec = args.codec ?? "dense";
    this.frameBytes = args.frameBytes ?? options.frameBytes;
    this.guest = this.columnIndex === 0 ? args.attached?.[rowIndex] : undefined;
    this.guestUpload = this.guest === undefined ? undefined : new VectorReceiver(args.gradient.length + 1, this.frameBytes, FrameKind.ReduceScatter);
    this.segments = partition(args.gradient.length + 1, this.row.length);
    this.startedAt = clock.now();
    this.stats = { attempt: args.attempt, n: this.members.size, elements: args.gradient.length, codec: this.codec, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  }

  start(): void {
    this.roundTimer = this.clock.setTimeout(() => this.fail("timeout", undefined, `torus round exceeded roundTimeoutMs=${this.options.roundTimeoutMs}`, true), this.options.roundTimeoutMs);
    // A host's row starts once its attached member's contribution is in (handleGuestFrame).
    if (this.guestUpload === undefined) this.beginRowScatter(weightedContribution(this.args.gradient, this.args.samples));
    else this.armGuestTimer("ringStartTimeoutMs - progressTimeoutMs", guestStartMs(this.options));
  }

  private beginRowScatter(contribution: Float32Array): void {
    const work = new SumWork(contribution, this.row.length, chunkCodecOf(this.codec), this.frameBytes, true);
    this.begin("row-scatter", this.spec(this.row, RingStage.TorusRow, work, ["reduce-scatter"], () => ({ owned: work.accumulated(this.columnIndex) })), ({ owned }) => this.beginColumn(owned));
  }

  handleFrame(from: PeerId, frame: Frame, bytes: number): void {
    if (this.finished) return;
    if (frame.kind === FrameKind.Abort) {
      if (!this.members.has(from)) return; // only members may abort; a stranger's abort is ignored, not obeyed
      this.fail("aborted", frame.suspect === "" ? undefined : frame.suspect, `peer ${from} aborted the round: ${frame.reason}`, true, from);
      return;
    }
    if (frame.stage === RingStage.Ring) {
      this.fail("bad-frame", from, "a flat ring frame (stage 0) in a torus round", true);
      return;
    }
    if (frame.stage === RingStage.TorusAttach) {
      this.handleGuestFrame(from, frame, bytes);
      return;
    }
    const stage: Stage = frame.stage === RingStage.TorusColumn ? "column" : frame.kind === FrameKind.ReduceScatter ? "row-scatter" : "row-gather";
    const now = this.current === undefined ? -1 : STAGES.indexOf(this.current.stage);
    const at = STAGES.indexOf(stage);
    if (at === now) this.current?.run.handleFrame(from, frame, bytes);
    else if (at < now) this.fail("bad-frame", from, `a ${stage} frame after this member's ${stage} ring finished`, true);
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

  /** A chunk of the attached member's contribution: once all are in, it joins this member's and the row's reduce-scatter starts. */
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
    this.beginRowScatter(own);
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

  private beginColumn(owned: Float32Array): void {
    const segment = this.segments[this.columnIndex] as Span;
    const hasTail = segment.length > 0 && segment.start + segment.length === this.args.gradient.length + 1;
    const work = new SumWork(owned.slice(), this.column.length, chunkCodecOf(this.codec), this.frameBytes, hasTail);
    this.begin("column", this.spec(this.column, RingStage.TorusColumn, work, ["reduce-scatter", "all-gather"], () => ({ sums: work.finalSums() })), ({ sums }) => this.beginRowGather(segment, sums));
  }

  private beginRowGather(segment: Span, sums: Float32Array): void {
    const vector = new Float32Array(this.args.gradient.length + 1);
    vector.set(sums, segment.start);
    const work = new SumWork(vector, this.row.length, chunkCodecOf(this.codec), this.frameBytes, true);
    // The final sums, before result() divides them in place: what an attached member is sent.
    const complete = (): (WorkResult & { sums: Float32Array | undefined }) | { noSamples: true } => {
      const sums = this.guest === undefined ? undefined : work.finalSums().slice();
      const outcome = work.result();
      return "noSamples" in outcome ? outcome : { ...outcome, sums };
    };
    this.begin("row-gather", this.spec(this.row, RingStage.TorusRow, work, ["all-gather"], complete), (outcome) => void this.complete(outcome));
  }

  private spec<O>(ring: readonly PeerId[], stage: RingStage, work: SumWork, phases: RingSpec<O>["phases"], complete: () => O | { noSamples: true }): RingSpec<O> {
    return { attempt: this.attempt, ring, stage, codec: this.codec, work, phases, elements: this.args.gradient.length, complete, ownsFailure: false };
  }

  /** Starts a stage's ring, hands it the frames held for it, and goes on with `next` when it is done. */
  private begin<O extends object>(stage: Stage, spec: RingSpec<O>, next: (outcome: O) => void): void {
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
    const held = this.held[stage].splice(0);
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

  private stageFailed(stage: Stage, error: unknown): void {
    if (this.finished) return;
    if (!(error instanceof AllReduceError)) {
      this.fail("bad-input", this.transport.self, `the ${stage} ring threw: ${String(error)}`, true);
      return;
    }
    // Every grid member sees the same zero total, so all fail alike and only an attached member needs telling.
    this.fail(error.code, error.suspect, `${stage} ring: ${error.detail}`, error.code !== "no-samples");
  }

  private hold(from: PeerId, frame: DataFrame, bytes: number, stage: Stage): void {
    if (this.heldBytes + bytes > this.options.maxBufferedFutureBytes) {
      this.fail("bad-frame", from, `sent more ${stage} frames ahead of this member than maxBufferedFutureBytes`, true);
      return;
    }
    // The handler's bytes are only lent: keep a copy of the payload.
    this.held[stage].push({ from, frame: { ...frame, payload: frame.payload.slice() }, bytes });
    this.heldBytes += bytes;
  }

  private addStats(stats: RoundStats): void {
    this.stats.framesSent += stats.framesSent;
    this.stats.bytesSent += stats.bytesSent;
    this.stats.framesReceived += stats.framesReceived;
    this.stats.bytesReceived += stats.bytesReceived;
  }

  /** The neighbours an abort goes to: left and right in the row, above and below in the column, and an attached member. */
  private neighbours(): Set<PeerId> {
    const x = this.row.length;
    const y = this.column.length;
    const rowAt = this.column.indexOf(this.transport.self);
    return new Set([
      this.row[leftOf(this.columnIndex, x)] as PeerId,
      this.row[rightOf(this.columnIndex, x)] as PeerId,
      this.column[leftOf(rowAt, y)] as PeerId,
      this.column[rightOf(rowAt, y)] as PeerId,
      ...(this.guest === undefined ? [] : [this.guest]),
    ]);
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
    for (const stage of STAGES) this.held[stage].length = 0;
    this.heldBytes = 0;
  }
}
