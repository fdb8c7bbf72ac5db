import { encodeAbortFrame, FrameKind, RingStage, type Codec, type DataFrame, type Frame } from "@crowdtrain/protocol";
import type { Clock, TimerHandle } from "./clock.ts";
import { AllReduceError, type AllReduceErrorCode } from "./errors.ts";
import type { HostedRun } from "./host.ts";
import type { AllReduceOptions } from "./options.ts";
import { partition, type Span } from "./partition.ts";
import { SumWork } from "./ring-sum.ts";
import type { WorkResult } from "./ring-work.ts";
import { chunkCodecOf, RoundRun, type RingSpec, type RoundResult, type RoundStats } from "./round.ts";
import { leftOf, rightOf } from "./schedule.ts";
import type { PeerId, Transport } from "./transport.ts";

export type TorusRoundArgs = {
  /** Unique id of this attempt, greater than every earlier one on this all-reducer. */
  attempt: number;
  /** The grid, row by row, the same on every member: every row the same length, each member once. */
  rows: readonly (readonly PeerId[])[];
  /** This peer's gradient; not modified. All members must pass the same length. */
  gradient: Float32Array;
  /** Samples the gradient was averaged over: its weight in the mean. */
  samples: number;
  frameBytes?: number;
  /** A summing codec (topk's sparse blocks are not summed on the way, so they gain nothing from a torus). */
  codec?: Exclude<Codec, "topk">;
};

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
    this.members = new Set(args.rows.flat());
    const rowIndex = args.rows.findIndex((row) => row.includes(self));
    this.row = args.rows[rowIndex] as readonly PeerId[];
    this.columnIndex = this.row.indexOf(self);
    this.column = args.rows.map((row) => row[this.columnIndex] as PeerId);
    this.codec = args.codec ?? "dense";
    this.frameBytes = args.frameBytes ?? options.frameBytes;
    this.segments = partition(args.gradient.length + 1, this.row.length);
    this.startedAt = clock.now();
    this.stats = { attempt: args.attempt, n: this.members.size, elements: args.gradient.length, codec: this.codec, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  }

  start(): void {
    this.roundTimer = this.clock.setTimeout(() => this.fail("timeout", undefined, `torus round exceeded roundTimeoutMs=${this.options.roundTimeoutMs}`, true), this.options.roundTimeoutMs);
    const work = SumWork.contribution(this.args.gradient, this.args.samples, this.row.length, chunkCodecOf(this.codec), this.frameBytes);
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
    this.begin("row-gather", this.spec(this.row, RingStage.TorusRow, work, ["all-gather"], () => work.result()), (outcome: WorkResult) => this.complete(outcome));
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

  private complete(outcome: WorkResult): void {
    this.finish();
    this.resolve({ ...outcome, stats: { ...this.stats, ms: this.clock.now() - this.startedAt } });
  }

  private stageFailed(stage: Stage, error: unknown): void {
    if (this.finished) return;
    if (!(error instanceof AllReduceError)) {
      this.fail("bad-input", this.transport.self, `the ${stage} ring threw: ${String(error)}`, true);
      return;
    }
    // Every member sees the same zero total, so all fail alike and nobody needs to be told.
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

  /** The grid neighbours an abort goes to: left and right in the row, above and below in the column. */
  private neighbours(): Set<PeerId> {
    const x = this.row.length;
    const y = this.column.length;
    const rowAt = this.column.indexOf(this.transport.self);
    return new Set([
      this.row[leftOf(this.columnIndex, x)] as PeerId,
      this.row[rightOf(this.columnIndex, x)] as PeerId,
      this.column[leftOf(rowAt, y)] as PeerId,
      this.column[rightOf(rowAt, y)] as PeerId,
    ]);
  }

  private fail(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean, skip?: PeerId): void {
    if (this.finished) return;
    this.finish();
    this.current?.run.abortLocally("aborted", suspect, message, false);
    if (notifyPeers) {
      const abort = encodeAbortFrame({ attempt: this.attempt, suspect: suspect ?? "", reason: `${code}: ${message}` });
      for (const peer of this.neighbours()) {
        if (peer === skip || peer === this.transport.self) continue;
        this.transport.send(peer, abort).catch((error: unknown) => {
          this.abortDeliveryFailures.push(`abort to ${peer}: ${String(error)}`);
        });
      }
    }
    this.reject(new AllReduceError(code, this.attempt, suspect, message));
  }

  private finish(): void {
    this.finished = true;
    if (this.roundTimer !== undefined) this.clock.clearTimeout(this.roundTimer);
    this.roundTimer = undefined;
    for (const stage of STAGES) this.held[stage].length = 0;
    this.heldBytes = 0;
  }
}
