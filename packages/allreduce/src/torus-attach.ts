import { encodeDataFrame, FrameKind, RingStage, type DataFrame, type Frame } from "@crowdtrain/protocol";
import type { Clock, TimerHandle } from "./clock.ts";
import { AllReduceError, type AllReduceErrorCode } from "./errors.ts";
import { sendAborts, type HostedRun } from "./host.ts";
import type { AllReduceOptions } from "./options.ts";
import { chunkOffsets } from "./partition.ts";
import { dense } from "./codecs/dense.ts";
import { decodeRingChunk } from "./codecs/ring-chunks.ts";
import { divideByTotal, weightedContribution } from "./reduce.ts";
import type { RoundResult, RoundStats } from "./round.ts";
import type { GridRoundArgs } from "./grid.ts";
import type { PeerId, Transport } from "./transport.ts";

/**
 * The hop between a grid member (the host: the first member of its dimension-0 group, a torus's row) and the member
 * attached to it, for member counts that fill no grid. The attached member sends its whole
 * contribution [samples·g, samples] up (stage TorusAttach, reduce-scatter frames); the host adds it
 * to its own before its row's reduce-scatter, and once the torus is done sends the final sums down
 * (all-gather frames), which the attached member divides by their total exactly as the host does:
 * the same bits. Both directions are float32 whatever the round's codec (one hop, nothing to re-encode).
 */

/** Elements per attach frame. */
export const attachChunkElements = (frameBytes: number): number => frameBytes / 4;

/** The frames of a vector sent over the attach hop, `kind` up (reduce-scatter) or down (all-gather). */
export function attachFrames(attempt: number, kind: typeof FrameKind.ReduceScatter | typeof FrameKind.AllGather, vector: Float32Array, frameBytes: number): Uint8Array<ArrayBuffer>[] {
  const unit = attachChunkElements(frameBytes);
  return chunkOffsets(vector.length, unit).map((offset) =>
    encodeDataFrame({ kind, attempt, step: 0, segment: 0, offset, stage: RingStage.TorusAttach }, vector.subarray(offset, Math.min(offset + unit, vector.length))),
  );
}

/**
 * Collects a vector sent over the attach hop by one sender, checking every chunk: the right kind,
 * dense, step and segment 0, a chunk start, no duplicate, then the ring's own float32 chunk checks
 * (decodeRingChunk: the right length, finite values, a whole, non-negative sample count at the end).
 */
export class VectorReceiver {
  readonly values: Float32Array;
  private readonly seen: Uint8Array;
  private missing: number;
  private readonly unit: number;

  constructor(
    length: number,
    frameBytes: number,
    private readonly kind: typeof FrameKind.ReduceScatter | typeof FrameKind.AllGather,
  ) {
    this.values = new Float32Array(length);
    this.unit = attachChunkElements(frameBytes);
    this.missing = chunkOffsets(length, this.unit).length;
    this.seen = new Uint8Array(this.missing);
  }

  get complete(): boolean {
    return this.missing === 0;
  }

  /** Takes a chunk; returns why it is refused (state unchanged then). */
  accept(frame: DataFrame): string | undefined {
    const what = this.kind === FrameKind.ReduceScatter ? "contribution" : "result";
    if (frame.kind !== this.kind) return `an attach frame of kind ${frame.kind} where the ${what} (kind ${this.kind}) travels`;
    if (frame.codec !== "dense") return `a ${frame.codec} attach frame; the attach hop is float32`;
    if (frame.step !== 0 || frame.segment !== 0) return `an attach frame with step ${frame.step} and segment ${frame.segment}; both must be 0`;
    const { offset } = frame;
    const length = this.values.length;
    if (offset % this.unit !== 0 || offset >= length) return `offset ${offset} is not a chunk start of the ${length}-element ${what}`;
    if (this.seen[offset / this.unit] === 1) return `duplicate chunk at offset ${offset} of the ${what}`;
    // The ring's float32 chunk checks: the size, finite values, and a whole sample count in the last element.
    const elements = Math.min(this.unit, length - offset);
    const decoded = decodeRingChunk(dense, frame.payload, elements, offset + elements === length);
    if ("problem" in decoded) return `${what} chunk at offset ${offset}: ${decoded.problem}`;
    this.values.set(decoded.values, offset); // a copy: the handler's bytes are only lent
    this.seen[offset / this.unit] = 1;
    this.missing--;
    return undefined;
  }
}

/**
 * One torus attempt on a member attached to a row: sends its contribution to its host, then waits
 * for the final sums (its one timer is roundTimeoutMs: the host names anyone silent in the grid and
 * relays the abort). Fails with the host's abort, the host's or any member's departure, or a bad frame.
 */
export class AttachedRun implements HostedRun<Frame, RoundResult> {
  readonly attempt: number;
  readonly result: Promise<RoundResult>;
  private readonly members: ReadonlySet<PeerId>;
  private readonly host: PeerId;
  private readonly receiver: VectorReceiver;
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
    const attached = args.attached ?? [];
    this.members = new Set([...args.members, ...attached]);
    this.host = args.members[attached.indexOf(transport.self) * (args.dims[0] as number)] as PeerId;
    this.receiver = new VectorReceiver(args.gradient.length + 1, this.frameBytes(), FrameKind.AllGather);
    this.startedAt = clock.now();
    this.stats = { attempt: args.attempt, n: this.members.size, elements: args.gradient.length, codec: args.codec ?? "dense", framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  }

  start(): void {
    this.roundTimer = this.clock.setTimeout(() => this.fail("timeout", this.host, `no result from host ${this.host} within roundTimeoutMs=${this.options.roundTimeoutMs}`, true), this.options.roundTimeoutMs);
    void this.upload();
  }

  handleFrame(from: PeerId, frame: Frame, bytes: number): void {
    if (this.finished) return;
    if (frame.kind === FrameKind.Abort) {
      if (!this.members.has(from)) return; // only members may abort
      this.fail("aborted", frame.suspect === "" ? undefined : frame.suspect, `peer ${from} aborted the round: ${frame.reason}`, false);
      return;
    }
    const problem =
      from !== this.host ? `data frame from ${from}, but only the host ${this.host} sends data to an attached member` : frame.stage !== RingStage.TorusAttach ? `a stage ${frame.stage} frame to an attached member` : this.receiver.accept(frame);
    if (problem !== undefined) {
      this.fail("bad-frame", from, problem, true);
      return;
    }
    this.stats.framesReceived++;
    this.stats.bytesReceived += bytes;
    if (!this.receiver.complete) return;
    const totalSamples = this.receiver.values[this.args.gradient.length] as number;
    if (totalSamples === 0) {
      this.fail("no-samples", undefined, "every peer contributed zero samples", false);
      return;
    }
    this.finish();
    this.resolve({ mean: divideByTotal(this.receiver.values), totalSamples, stats: { ...this.stats, ms: this.clock.now() - this.startedAt } });
  }

  handlePeerGone(peer: PeerId, reason: string): void {
    if (this.finished || !this.members.has(peer) || peer === this.transport.self) return;
    this.fail("peer-gone", peer, `link to ${peer} closed: ${reason}`, peer !== this.host);
  }

  handlePeerViolation(from: PeerId, problem: string): void {
    if (this.finished || !this.members.has(from)) return;
    this.fail("bad-frame", from, problem, true);
  }

  abortLocally(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean): void {
    this.fail(code, suspect, message, notifyPeers);
  }

  private frameBytes(): number {
    return this.args.frameBytes ?? this.options.frameBytes;
  }

  private async upload(): Promise<void> {
    const frames = attachFrames(this.attempt, FrameKind.ReduceScatter, weightedContribution(this.args.gradient, this.args.samples), this.frameBytes());
    for (const frame of frames) {
      if (this.finished) return;
      this.stats.framesSent++;
      this.stats.bytesSent += frame.byteLength;
      try {
        await this.transport.send(this.host, frame);
      } catch (error) {
        this.fail("peer-gone", this.host, `send to host ${this.host} failed: ${String(error)}`, false);
        return;
      }
    }
  }

  /** An attached member's only neighbour is its host, which relays an abort to the grid. */
  private fail(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyHost: boolean): void {
    if (this.finished) return;
    this.finish();
    if (notifyHost) sendAborts(this.transport, { attempt: this.attempt, suspect, reason: `${code}: ${message}` }, [this.host], undefined, this.abortDeliveryFailures);
    this.reject(new AllReduceError(code, this.attempt, suspect, message));
  }

  private finish(): void {
    this.finished = true;
    if (this.roundTimer !== undefined) this.clock.clearTimeout(this.roundTimer);
    this.roundTimer = undefined;
  }
}
