import { encodeAbortFrame, encodeDataFrame, FrameKind, type DataFrame, type Frame } from "@crowdtrain/protocol";
import type { Clock, TimerHandle } from "./clock.ts";
import { AllReduceError, type AllReduceErrorCode } from "./errors.ts";
import type { AllReduceOptions } from "./options.ts";
import { chunkCount, chunkOffsets, partition, type Span } from "./partition.ts";
import { addInto, divideByTotal, firstNonFinite, weightedContribution } from "./reduce.ts";
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
};

export type RoundStats = {
  attempt: number;
  n: number;
  elements: number;
  framesSent: number;
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  ms: number;
};

export type RoundResult = {
  /** Σ samples_k · g_k / Σ samples_k, bit-identical on every member. */
  mean: Float32Array;
  totalSamples: number;
  stats: RoundStats;
};

type Outgoing = { kind: DataFrame["kind"]; step: number; segment: number; offset: number; length: number };

const phaseOf = (kind: DataFrame["kind"]): Phase => (kind === FrameKind.ReduceScatter ? "reduce-scatter" : "all-gather");
const frameKindName = (kind: number): string => Object.entries(FrameKind).find(([, value]) => value === kind)?.[0] ?? `kind-${kind}`;

/**
 * One all-reduce attempt on one peer: owns its buffers, its send queue and its two timers.
 * Every received chunk is validated, applied, and (when a later step needs it) queued for the right
 * neighbour straight away, so chunks stream around the ring instead of waiting for whole segments.
 */
export class RoundRun {
  readonly attempt: number;
  readonly result: Promise<RoundResult>;
  private readonly ring: readonly PeerId[];
  private readonly n: number;
  private readonly position: number;
  private readonly left: PeerId;
  private readonly right: PeerId;
  private readonly spans: Span[];
  private readonly chunkElems: number;
  /** Reduce-scatter accumulator: this peer's weighted contribution, summed into as chunks arrive. */
  private readonly acc: Float32Array;
  /** Final sums: written once per element (owned segment from acc, the rest from all-gather frames). */
  private readonly sums: Float32Array;
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
  private resolve!: (result: RoundResult) => void;
  private reject!: (error: AllReduceError) => void;
  /** Sends of abort notices that failed (the neighbour is usually the one that died); kept for diagnosis. */
  readonly abortDeliveryFailures: string[] = [];

  constructor(
    args: RoundArgs,
    private readonly transport: Transport,
    private readonly clock: Clock,
    private readonly options: AllReduceOptions,
  ) {
    this.result = new Promise<RoundResult>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.attempt = args.attempt;
    this.ring = args.ring;
    this.n = args.ring.length;
    this.position = args.ring.indexOf(transport.self);
    this.left = args.ring[leftOf(this.position, this.n)] as PeerId;
    this.right = args.ring[rightOf(this.position, this.n)] as PeerId;
    this.chunkElems = (args.frameBytes ?? options.frameBytes) / 4;
    this.acc = weightedContribution(args.gradient, args.samples);
    this.spans = partition(this.acc.length, this.n);
    this.sums = new Float32Array(this.acc.length);
    this.seen = { "reduce-scatter": [], "all-gather": [] };
    for (const phase of ["reduce-scatter", "all-gather"] as const) {
      for (let step = 0; step < stepsPerPhase(this.n); step++) {
        const chunks = chunkCount(this.span(receiveSegment(phase, step, this.position, this.n)).length, this.chunkElems);
        this.seen[phase].push(new Uint8Array(chunks));
        this.expectedFrames += chunks;
      }
    }
    this.startedAt = clock.now();
    this.stats = { attempt: args.attempt, n: this.n, elements: args.gradient.length, framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  }

  start(): void {
    if (this.n === 1) {
      this.own(0, 0, this.span(0).length);
      this.maybeComplete();
      return;
    }
    this.roundTimer = this.clock.setTimeout(
      () => this.fail("timeout", this.left, `round exceeded roundTimeoutMs=${this.options.roundTimeoutMs}`, true),
      this.options.roundTimeoutMs,
    );
    this.armProgressTimer();
    const first = sendSegment("reduce-scatter", 0, this.position, this.n);
    for (const offset of chunkOffsets(this.span(first).length, this.chunkElems)) {
      this.enqueue(FrameKind.ReduceScatter, 0, first, offset);
    }
    this.maybeComplete();
  }

  handleFrame(from: PeerId, frame: Frame, bytes: number): void {
    if (this.finished) return;
    if (frame.kind === FrameKind.Abort) {
      if (!this.ring.includes(from)) return; // only members may abort; a stranger's abort is ignored, not obeyed
      this.fail("aborted", frame.suspect, `peer ${from} aborted the round: ${frame.reason}`, true, from);
      return;
    }
    const problem = this.validate(from, frame);
    if (problem !== undefined) {
      this.fail("bad-frame", from, problem, true);
      return;
    }
    this.stats.framesReceived++;
    this.stats.bytesReceived += bytes;
    const phase = phaseOf(frame.kind);
    if (phase === "all-gather" || frame.step === stepsPerPhase(this.n) - 1) this.ringStarted = true;
    this.armProgressTimer();
    (this.seen[phase][frame.step] as Uint8Array)[frame.offset / this.chunkElems] = 1;
    this.expectedFrames--;
    const start = this.span(frame.segment).start + frame.offset;
    const last = frame.step === stepsPerPhase(this.n) - 1;
    if (phase === "reduce-scatter") {
      addInto(this.acc, start, frame.payload);
      if (last) this.own(frame.segment, frame.offset, frame.payload.length);
      else this.enqueue(FrameKind.ReduceScatter, frame.step + 1, frame.segment, frame.offset);
    } else {
      this.sums.set(frame.payload, start);
      if (!last) this.enqueue(FrameKind.AllGather, frame.step + 1, frame.segment, frame.offset);
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
    const phase = phaseOf(frame.kind);
    if (frame.step >= stepsPerPhase(this.n)) return `${phase} step ${frame.step} does not exist in a ring of ${this.n}`;
    const expected = receiveSegment(phase, frame.step, this.position, this.n);
    if (frame.segment !== expected) return `${phase} step ${frame.step} carried segment ${frame.segment}, expected ${expected}`;
    const segmentLength = this.span(frame.segment).length;
    if (frame.offset % this.chunkElems !== 0 || frame.offset >= segmentLength) {
      return `offset ${frame.offset} is not a chunk start inside segment ${frame.segment} of ${segmentLength} elements`;
    }
    const wanted = Math.min(this.chunkElems, segmentLength - frame.offset);
    if (frame.payload.length !== wanted) return `chunk at offset ${frame.offset} has ${frame.payload.length} elements, expected ${wanted}`;
    if ((this.seen[phase][frame.step] as Uint8Array)[frame.offset / this.chunkElems] === 1) {
      return `duplicate ${phase} step ${frame.step} chunk at offset ${frame.offset}`;
    }
    const bad = firstNonFinite(frame.payload);
    if (bad >= 0) return `non-finite value ${frame.payload[bad]} at element ${frame.offset + bad} of segment ${frame.segment}`;
    return undefined;
  }

  /** A chunk of this peer's own segment is fully reduced: it becomes final and starts the all-gather. */
  private own(segment: number, offset: number, length: number): void {
    const start = this.span(segment).start + offset;
    this.sums.set(this.acc.subarray(start, start + length), start);
    if (this.n > 1) this.enqueue(FrameKind.AllGather, 0, segment, offset);
  }

  private enqueue(kind: DataFrame["kind"], step: number, segment: number, offset: number): void {
    const length = Math.min(this.chunkElems, this.span(segment).length - offset);
    this.queue.push({ kind, step, segment, offset, length });
    if (!this.pumping) void this.pump();
  }

  /**
   * Sends queued frames in order, one transport.send at a time: the transport's promise is the
   * back-pressure. Frames are encoded only when sent, so queued chunks cost no memory.
   */
  private async pump(): Promise<void> {
    this.pumping = true;
    while (this.queueHead < this.queue.length && !this.finished) {
      const item = this.queue[this.queueHead++] as Outgoing;
      const source = item.kind === FrameKind.ReduceScatter ? this.acc : this.sums;
      const start = this.span(item.segment).start + item.offset;
      const bytes = encodeDataFrame(
        { kind: item.kind, attempt: this.attempt, step: item.step, segment: item.segment, offset: item.offset },
        source.subarray(start, start + item.length),
      );
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
    const totalSamples = this.sums[this.sums.length - 1] as number;
    if (totalSamples === 0) {
      // Every member sees the same zero total, so all fail alike and nobody needs to be told.
      this.fail("no-samples", undefined, "every peer contributed zero samples", false);
      return;
    }
    this.finish();
    this.resolve({ mean: divideByTotal(this.sums), totalSamples, stats: { ...this.stats, ms: this.clock.now() - this.startedAt } });
  }

  private armProgressTimer(): void {
    if (this.progressTimer !== undefined) this.clock.clearTimeout(this.progressTimer);
    this.progressTimer = undefined;
    if (this.expectedFrames === 0) return;
    const [name, ms] = this.ringStarted ? ["progressTimeoutMs", this.options.progressTimeoutMs] : ["ringStartTimeoutMs", this.options.ringStartTimeoutMs];
    this.progressTimer = this.clock.setTimeout(() => this.fail("timeout", this.left, `nothing from ${this.left} for ${name}=${ms}`, true), ms);
  }

  private fail(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean, skip?: PeerId): void {
    if (this.finished) return;
    this.finish();
    if (notifyPeers && this.n > 1) {
      const abort = encodeAbortFrame({ attempt: this.attempt, suspect: suspect ?? "", reason: `${code}: ${message}` });
      for (const peer of new Set([this.left, this.right])) {
        if (peer === skip || peer === this.transport.self) continue;
        this.transport.send(peer, abort).catch((error: unknown) => {
          this.abortDeliveryFailures.push(`abort to ${peer}: ${String(error)}`);
        });
      }
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

  private span(segment: number): Span {
    return this.spans[segment] as Span;
  }
}
