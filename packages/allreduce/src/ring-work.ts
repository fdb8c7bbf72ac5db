/**
 * What a ring round does with its data, apart from the schedule. RoundRun (round.ts) owns the
 * schedule checks, the send queue, timers and failure; a RingWork owns the vectors and the codec:
 * - SumWork (ring-sum.ts, dense/fp16/int8): reduce-scatter then all-gather of running sums;
 * - TopkWork (ring-topk.ts): all-gather only, of each member's sparse block.
 * Segments and offsets are the frame's: a chunk is `chunkUnit` elements (pairs, for topk) and a
 * segment has `chunkCount(segment)` chunks, the same on every member.
 */
export interface RingWork {
  /** Present when the round sums along the ring (a reduce-scatter phase); absent for topk. */
  readonly partials: PartialSums | undefined;
  readonly chunkUnit: number;
  chunkCount(segment: number): number;
  /**
   * A chunk of the segment this member owns is final: returns the bytes every member will decode
   * for it (this member adopts their decoding too), or why it cannot (a bug, not data).
   */
  finalize(segment: number, offset: number): { bytes: Uint8Array } | { problem: string };
  /** Checks and keeps an all-gathered chunk (a view: copy what you keep); a problem leaves state unchanged. */
  gather(segment: number, offset: number, payload: Uint8Array): string | undefined;
  /** Every chunk is in: the mean, or that nobody contributed a sample. */
  result(): WorkResult | { noSamples: true };
}

export interface PartialSums {
  /** The running sum of a chunk, encoded to send on (called when it is sent). */
  encode(segment: number, offset: number): Uint8Array;
  /** Checks a received running sum and adds this member's contribution to it; a problem leaves state unchanged. */
  add(segment: number, offset: number, payload: Uint8Array): string | undefined;
}

export type WorkResult = { mean: Float32Array; totalSamples: number; residual?: Float32Array };
