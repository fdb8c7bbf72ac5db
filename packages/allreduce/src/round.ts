import { DEFAULT_TOPK_FRACTION, encodeCodedFrame, FrameKind, RingStage, type Codec, type DataFrame, type Frame } from "@crowdtrain/protocol";
import type { Clock, TimerHandle } from "./clock.ts";
import { CHUNK_CODECS } from "./codecs/ring-chunks.ts";
import type { ChunkCodec } from "./codecs/types.ts";
import { AllReduceError, type AllReduceErrorCode } from "./errors.ts";
import { sendAborts } from "./host.ts";
import type { AllReduceOptions } from "./options.ts";
import { SumWork } from "./ring-sum.ts";
import { TopkWork } from "./ring-topk.ts";
import type { PartialSums, RingWork, WorkResult } from "./ring-work.ts";
import { leftOf, receiveSegment, rightOf, sendSegment, stepsPerPhase, type Phase } from "./schedule.ts";
import type { PeerId, Transport } from "./transport.ts";

export type RoundArgs = {
  /** Unique id of this attempt, greater than every earlier one on this all-reducer. */
  attempt: number;
  /** Ring order, the same array on every member; must contain this peer once. */
  ring: readonly PeerId[];
  /** This peer's gradient; not modified. All members must pass the same length. */
  gradient: Float32Array;
  /** Samples the gradient was averaged over: its weight in the mean. */
  samples: number;
  /** Frame payload size for this round (the coordinator's choice); defaults to the reducer's option. */
  frameBytes?: number;
  /** Wire format of this round (README "Codecs"), the same on every member; default "dense". */
  codec?: Codec;
  /** topk: the share of the gradient each member sends, in (0, 1]; default DEFAULT_TOPK_FRACTION. */
  topkFraction?: number;
};

export type RoundStats = {
  attempt: number;
  n: number;
  elements: number;
  codec: Codec;
  framesSent: number;
  /** Whole frames as sent (headers and the codec's bytes): what the codec costs on the wire. */
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  ms: number;
};

export type RoundResult = {
  /** Σ samples_k · g_k / Σ samples_k as the codec carried it, bit-identical on every member. */
  mean: Float32Array;
  /** Σ samples_k, exact whatever the codec. */
  totalSamples: number;
  /**
   * topk only (undefined otherwise): what of this member's `gradient` the mean did not receive, in
   * gradient units (not weighted by samples): gradient[e] where e was not sent, 0 where it was. For
   * error feedback: hold it under the attempt (ErrorFeedback).
   */
  residual?: Float32Array;
  stats: RoundStats;
};

type RingKind = DataFrame["kind"];
/** A frame to send; `payload` is set for all-gather bytes (sent as they are), else the running sum is encoded when sent. */
type Outgoing = { kind: RingKind; step: number; segment: number; offset: number; payload: Uint8Array | undefined };

const phaseOf = (kind: RingKind): Phase => (kind === FrameKind.ReduceScatter ? "reduce-scatter" : "all-gather");
const frameKindName = (kind: number): string => Object.entries(FrameKind).find(([, value]) => value === kind)?.[0] ?? `kind-${kind}`;

/** The work of a flat ring round's codec; throws RangeError when the codec's arguments do not fit. */
export function workFor(args: RoundArgs, n: number, position: number, frameBytes: number): RingWork {
  const codec = args.codec ?? "dense";
  if (codec === "topk") return new TopkWork(args.gradient, args.samples, n, position, args.topkFraction ?? DEFAULT_TOPK_FRACTION, frameBytes);
  return SumWork.contribution(args.gradient, args.samples, n, chunkCodecOf(codec), frameBytes);
}

export function chunkCodecOf(codec: Exclude<Codec, "topk">): ChunkCodec {
  const chunkCodec = CHUNK_CODECS[codec] as ChunkCodec | undefined;
  if (chunkCodec === undefined) throw new RangeError(`unknown codec ${String(codec)}`);
  return chunkCodec;
}

/**
 * One ring of one attempt: the flat ring's whole round, or one of a torus's three rings
 * (torus.ts). `phases` is what this ring runs: both (the flat ring, a torus column), the
 * reduce-scatter alone (a torus row first: each member keeps the sums of its own segment), or the
 * all-gather alone (topk; a torus row last: each member starts with its own segment final).
 */
export type RingSpec<O> = {
  attempt: number;
  ring: readonly PeerId[];
  stage: RingStage;
  codec: Codec;
  work: RingWork;
  phases: readonly Phase[];
  /** Elements of the gradient this attempt reduces (for stats). */
  elements: number;
  /** Every chunk is in: what the round yields, or that nobody contributed a sample. */
  complete: () => O | { noSamples: true };
  /**
   * Whether this ring tells its neighbours when it fails, and obeys their abort frames. A torus's
   * rings do not: the torus run owns failure for the whole attempt and tells all its neighbours.
   */
  ownsFailure: boolean;
};

/** A flat ring round: both phases (topk: the all-gather alone), stage 0, the mean as result. */
export function flatRingSpec(args: RoundArgs, frameBytes: number, self: PeerId): RingSpec<WorkResult> {
  const work = workFor(args, args.ring.length, args.ring.indexOf(self), frameBytes);
  return {
    attempt: args.attempt,
    ring: args.ring,
    stage: RingStage.Ring,
    codec: args.codec ?? "dense",
    work,
    phases: work.partials === undefined ? ["all-gather"] : ["reduce-scatter", "all-gather"],
    elements: args.gradient.length,
    complete: () => work.result(),
    ownsFailure: true,
  };
}

/**
 * One ring attempt on one peer: owns its send queue and its two timers, and its work (the
 * vectors and codec, ring-work.ts). Every received chunk is validated, applied, and (when a later
 * step needs it) queued for the right neighbour straight away, so chunks stream around the ring
 * instead of waiting for whole segments. All-gather chunks are forwarded as the bytes that arrived.
 */
export class RoundRun<O = WorkResult> {
  readonly attempt: number;
  readonly result: Promise<O & { stats: RoundStats }>;
  private readonly ring: readonly PeerId[];
  private readonly n: number;
  private readonly position: number;
  private readonly left: PeerId;
  private readonly right: PeerId;
  private readonly codec: Codec;
  private readonly stage: RingStage;
  private readonly work: RingWork;
  private readonly phases: readonly Phase[];
  /** One flag per chunk per (phase, step): rejects duplicates and tells when a phase is complete. */
  private readonly seen: Record<Phase, Uint8Array[]>;
  private expectedFrames = 0;
  /** Set once a frame arrived that carries every other member's contribution: all have started. */
  private ringStarted = false;
  private readonly queue: Outgoing[] = [];
  private queueHead = 0;
  private pumping = false;
  private finished = false;
  private progressTimer: TimerHandle | undefined;
  private roundTimer: TimerHandle | undefined;
  private readonly startedAt: number;
  private readonly stats: Omit<RoundStats, "ms">;
  private resolve!: (result: O & { stats: RoundStats }) => void;
  private reject!: (error: AllReduceError) => void;
  /** Sends of abort notices that failed (the neighbour is usually the one that died); kept for diagnosis. */
  readonly abortDeliveryFailures: string[] = [];

  constructor(
    private readonly spec: RingSpec<O>,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly options: AllReduceOptions,
  ) {
    this.result = new Promise<O & { stats: RoundStats }>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.attempt = spec.attempt;
    this.ring = spec.ring;
    this.n = spec.ring.length;
    this.position = spec.ring.indexOf(transport.self);
    this.left = spec.ring[leftOf(this.position, this.n)] as PeerId;
    this.right = spec.ring[rightOf(this.position, this.n)] as PeerId;
    this.codec = spec.codec;
    this.stage = spec.stage;
    this.work = spec.work;
    this.phases = spec.phases;
    this.seen = { "reduce-scatter": [], "all-gather": [] };
    for (const phase of this.phases) {
      for (let step = 0; step < stepsPerPhase(this.n); step++) {
        const chunks = this.work.chunkCount(receiveSegment(phase, step, this.position, this.n));
        this.seen[phase].push(new Uint8Array(chunks));
        this.expectedFrames += chunks;
      }
    }
    this.startedAt = clock.now();
    this.stats = { attempt: spec.attempt, n: this.n, elements: spec.elements, codec: this.codec, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  }

  start(): void {
    if (this.n > 1) {
      this.roundTimer = this.clock.setTimeout(
        () => this.fail("timeout", this.left, `round exceeded roundTimeoutMs=${this.options.roundTimeoutMs}`, true),
        this.options.roundTimeoutMs,
      );
      this.armProgressTimer();
    }
    if (this.phases[0] === "all-gather" || this.n === 1) {
      // Nothing to sum first (an all-gather alone, or a ring of one): this member's own segment is final already.
      for (const offset of this.offsets(this.position)) this.own(this.position, offset);
    } else {
      const first = sendSegment("reduce-scatter", 0, this.position, this.n);
      for (const offset of this.offsets(first)) this.enqueue({ kind: FrameKind.ReduceScatter, step: 0, segment: first, offset, payload: undefined });
    }
    this.maybeComplete();
  }

  handleFrame(from: PeerId, frame: Frame, bytes: number): void {
    if (this.finished) return;
    if (frame.kind === FrameKind.Abort) {
      // A torus's run reads abort frames itself; only a ring that owns its failure obeys them.
      if (!this.spec.ownsFailure || !this.ring.includes(from)) return; // only members may abort; a stranger's abort is ignored, not obeyed
      this.fail("aborted", frame.suspect, `peer ${from} aborted the round: ${frame.reason}`, true, from);
      return;
    }
    const problem = this.validate(from, frame) ?? this.apply(frame);
    if (problem !== undefined) {
      this.fail("bad-frame", from, problem, true);
      return;
    }
    this.stats.framesReceived++;
    this.stats.bytesReceived += bytes;
    const phase = phaseOf(frame.kind);
    const last = frame.step === stepsPerPhase(this.n) - 1;
    if (phase !== this.phases[0] || last) this.ringStarted = true;
    this.armProgressTimer();
    (this.seen[phase][frame.step] as Uint8Array)[frame.offset / this.work.chunkUnit] = 1;
    this.expectedFrames--;
    if (phase === "reduce-scatter") {
      if (last) this.own(frame.segment, frame.offset);
      else this.enqueue({ kind: FrameKind.ReduceScatter, step: frame.step + 1, segment: frame.segment, offset: frame.offset, payload: undefined });
    } else if (!last) {
      // The bytes as they came (the handler's view is only lent): nobody re-encodes a final chunk.
      this.enqueue({ kind: FrameKind.AllGather, step: frame.step + 1, segment: frame.segment, offset: frame.offset, payload: frame.payload.slice() });
    }
    this.maybeComplete();
  }

  handlePeerGone(peer: PeerId, reason: string): void {
    if (this.finished || !this.ring.includes(peer) || peer === this.transport.self) return;
    this.fail("peer-gone", peer, `link to ${peer} closed: ${reason}`, true, peer);
  }

  /** A member sent something undecodable: it is named, and the round fails everywhere. */
  handlePeerViolation(from: PeerId, problem: string): void {
    if (this.finished || !this.ring.includes(from)) return;
    this.fail("bad-frame", from, problem, true);
  }

  /** Fails the round without notifying peers (used when the owner closes or the input is refused). */
  abortLocally(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean): void {
    this.fail(code, suspect, message, notifyPeers);
  }

  private validate(from: PeerId, frame: DataFrame): string | undefined {
    // Other kinds of data frame belong to other plans (a direct plan's scatter and gather).
    if (frame.kind !== FrameKind.ReduceScatter && frame.kind !== FrameKind.AllGather) return `a ring does not take ${frameKindName(frame.kind)} frames`;
    if (from !== this.left) return `data frame from ${from}, but only the left neighbour ${this.left} sends data to this peer`;
    if (frame.stage !== this.stage) return `a stage ${frame.stage} frame in a stage ${this.stage} ring`;
    if (frame.codec !== this.codec) return `${frame.codec} frame in a ${this.codec} round`;
    const phase = phaseOf(frame.kind);
    if (!this.phases.includes(phase)) return `this ${this.codec} ring has no ${phase} phase`;
    if (frame.step >= stepsPerPhase(this.n)) return `${phase} step ${frame.step} does not exist in a ring of ${this.n}`;
    const expected = receiveSegment(phase, frame.step, this.position, this.n);
    if (frame.segment !== expected) return `${phase} step ${frame.step} carried segment ${frame.segment}, expected ${expected}`;
    const unit = this.work.chunkUnit;
    const chunks = this.work.chunkCount(frame.segment);
    if (frame.offset % unit !== 0 || frame.offset / unit >= chunks) {
      return `offset ${frame.offset} is not a chunk start inside segment ${frame.segment} (${chunks} chunks of ${unit})`;
    }
    if ((this.seen[phase][frame.step] as Uint8Array)[frame.offset / unit] === 1) return `duplicate ${phase} step ${frame.step} chunk at offset ${frame.offset}`;
    return undefined;
  }

  /** Decodes and applies a frame whose header is valid; returns why its payload is refused. */
  private apply(frame: DataFrame): string | undefined {
    const phase = phaseOf(frame.kind);
    const problem = phase === "reduce-scatter" ? this.partials().add(frame.segment, frame.offset, frame.payload) : this.work.gather(frame.segment, frame.offset, frame.payload);
    return problem === undefined ? undefined : `${phase} step ${frame.step} chunk at offset ${frame.offset} of segment ${frame.segment}: ${problem}`;
  }

  /** A chunk of this peer's own segment is final: its encoding starts the all-gather (if this ring runs one). */
  private own(segment: number, offset: number): void {
    if (!this.phases.includes("all-gather")) return; // a reduce-scatter alone: the sums stay in the work
    const final = this.work.finalize(segment, offset);
    if ("problem" in final) {
      this.fail("bad-input", this.transport.self, final.problem, true);
      return;
    }
    if (this.n > 1) this.enqueue({ kind: FrameKind.AllGather, step: 0, segment, offset, payload: final.bytes });
  }

  private enqueue(item: Outgoing): void {
    this.queue.push(item);
    if (!this.pumping) void this.pump();
  }

  /**
   * Sends queued frames in order, one transport.send at a time: the transport's promise is the
   * back-pressure. Running sums are encoded only when sent, so queued reduce-scatter chunks cost no
   * memory; all-gather bytes are held until sent, then let go.
   */
  private async pump(): Promise<void> {
    this.pumping = true;
    while (this.queueHead < this.queue.length && !this.finished) {
      const item = this.queue[this.queueHead++] as Outgoing;
      const payload = item.payload ?? this.partials().encode(item.segment, item.offset);
      item.payload = undefined;
      const bytes = encodeCodedFrame({ kind: item.kind, attempt: this.attempt, step: item.step, segment: item.segment, offset: item.offset, codec: this.codec, stage: this.stage }, payload);
      this.stats.framesSent++;
      this.stats.bytesSent += bytes.byteLength;
      try {
        await this.transport.send(this.right, bytes);
      } catch (error) {
        this.fail("peer-gone", this.right, `send to ${this.right} failed: ${String(error)}`, true, this.right);
      }
    }
    this.pumping = false;
    this.maybeComplete();
  }

  private maybeComplete(): void {
    if (this.finished || this.expectedFrames > 0 || this.pumping || this.queueHead < this.queue.length) return;
    const outcome = this.spec.complete();
    if (typeof outcome === "object" && outcome !== null && "noSamples" in outcome) {
      // Every member sees the same zero total, so all fail alike and nobody needs to be told.
      this.fail("no-samples", undefined, "every peer contributed zero samples", false);
      return;
    }
    this.finish();
    this.resolve({ ...(outcome as O), stats: { ...this.stats, ms: this.clock.now() - this.startedAt } });
  }

  private armProgressTimer(): void {
    if (this.progressTimer !== undefined) this.clock.clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    if (this.expectedFrames === 0) return;
    const [name, ms] = this.ringStarted
      ? [`progressTimeoutMs + ${this.n}·hopMs`, this.options.progressTimeoutMs + this.n * this.options.hopMs]
      : ["ringStartTimeoutMs", this.options.ringStartTimeoutMs];
    this.progressTimer = this.clock.setTimeout(() => this.fail("timeout", this.left, `nothing from ${this.left} for ${name}=${ms}`, true), ms);
  }

  private fail(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean, skip?: PeerId): void {
    if (this.finished) return;
    this.finish();
    if (notifyPeers && this.spec.ownsFailure && this.n > 1) {
      sendAborts(this.transport, { attempt: this.attempt, suspect, reason: `${code}: ${message}` }, [this.left, this.right], skip, this.abortDeliveryFailures);
    }
    this.reject(new AllReduceError(code, this.attempt, suspect === "" ? undefined : suspect, message));
  }

  private finish(): void {
    this.finished = true;
    if (this.progressTimer !== undefined) this.clock.clearTimeout(this.progressTimer);
    if (this.roundTimer !== undefined) this.clock.clearTimeout(this.roundTimer);
    this.progressTimer = undefined;
    this.roundTimer = undefined;
  }

  private partials(): PartialSums {
    if (this.work.partials === undefined) throw new Error(`a ${this.codec} round has no running sums`);
    return this.work.partials;
  }

  private offsets(segment: number): number[] {
    return Array.from({ length: this.work.chunkCount(segment) }, (_, chunk) => chunk * this.work.chunkUnit);
  }
}
