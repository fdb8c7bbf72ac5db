import { decodeRingChunk, encodeRingChunk, ringChunkElements } from "./codecs/ring-chunks.ts";
import type { ChunkCodec } from "./codecs/types.ts";
import { chunkCount, partition, type Span } from "./partition.ts";
import { addIntoFinite, divideByTotal, weightedContribution } from "./reduce.ts";
import type { PartialSums, RingWork, WorkResult } from "./ring-work.ts";

type Chunk = { start: number; length: number; withTail: boolean };

/**
 * The summing ring's data (dense, fp16, int8): a vector (a member's contribution [samples·g, samples],
 * or, in a torus, a partial sum of it) is cut into N segments of `chunkUnit`-element chunks. Reduce-scatter: a received running sum is decoded, this
 * member's contribution added in float32 (addInto), and re-encoded when sent on. The owner of a
 * segment encodes each final chunk once and adopts decode(encode(final)) itself; the all-gather then
 * carries those bytes unchanged (RoundRun forwards them), so every member decodes the same bytes.
 */
export class SumWork implements RingWork {
  readonly chunkUnit: number;
  readonly partials: PartialSums;
  /** Reduce-scatter accumulator: this member's weighted contribution, running sums added in as they arrive. */
  private readonly acc: Float32Array;
  /** Final sums, as every member decodes them; written once per element. */
  private readonly sums: Float32Array;
  private readonly spans: Span[];

  /** A member's contribution [samples·g, samples]: its last element is the sample count (the tail). */
  static contribution(gradient: Float32Array, samples: number, n: number, codec: ChunkCodec, frameBytes: number): SumWork {
    return new SumWork(weightedContribution(gradient, samples), n, codec, frameBytes, true);
  }

  /**
   * @param vector taken over (summed into in place): this member's values.
   * @param hasTail whether the vector's last element is the sample count, which travels exact.
   */
  constructor(
    vector: Float32Array,
    n: number,
    private readonly codec: ChunkCodec,
    frameBytes: number,
    private readonly hasTail: boolean,
  ) {
    this.chunkUnit = ringChunkElements(codec, frameBytes);
    if (this.chunkUnit === 0) throw new RangeError(`frameBytes=${frameBytes} cannot hold one ${codec.name} element with the sample count`);
    this.acc = vector;
    this.spans = partition(this.acc.length, n);
    this.sums = new Float32Array(this.acc.length);
    this.partials = {
      encode: (segment, offset) => {
        const { start, length, withTail } = this.chunk(segment, offset);
        return encodeRingChunk(this.codec, this.acc.subarray(start, start + length), withTail);
      },
      add: (segment, offset, payload) => this.add(segment, offset, payload),
    };
  }

  chunkCount(segment: number): number {
    return chunkCount(this.span(segment).length, this.chunkUnit);
  }

  finalize(segment: number, offset: number): { bytes: Uint8Array } | { problem: string } {
    const { start, length, withTail } = this.chunk(segment, offset);
    const bytes = encodeRingChunk(this.codec, this.acc.subarray(start, start + length), withTail);
    const decoded = decodeRingChunk(this.codec, bytes, length, withTail);
    if ("problem" in decoded) return { problem: `own final chunk at offset ${offset} of segment ${segment} does not decode: ${decoded.problem}` };
    this.sums.set(decoded.values, start);
    return { bytes };
  }

  gather(segment: number, offset: number, payload: Uint8Array): string | undefined {
    const { start, length, withTail } = this.chunk(segment, offset);
    const decoded = decodeRingChunk(this.codec, payload, length, withTail);
    if ("problem" in decoded) return decoded.problem;
    this.sums.set(decoded.values, start);
    return undefined;
  }

  /** After a reduce-scatter alone: the segment's sums as this member accumulated them (a view). */
  accumulated(segment: number): Float32Array {
    const { start, length } = this.span(segment);
    return this.acc.subarray(start, start + length);
  }

  /** After an all-gather: the final sums of the whole vector, as every member decoded them (a view). */
  finalSums(): Float32Array {
    return this.sums;
  }

  result(): WorkResult | { noSamples: true } {
    if (!this.hasTail) throw new Error("a vector without the sample count has no mean");
    const totalSamples = this.sums[this.sums.length - 1] as number;
    // Every member sees the same zero total, so all fail alike.
    if (totalSamples === 0) return { noSamples: true };
    return { mean: divideByTotal(this.sums), totalSamples };
  }

  private add(segment: number, offset: number, payload: Uint8Array): string | undefined {
    const { start, length, withTail } = this.chunk(segment, offset);
    const decoded = decodeRingChunk(this.codec, payload, length, withTail);
    if ("problem" in decoded) return decoded.problem;
    const overflow = addIntoFinite(this.acc, start, decoded.values);
    return overflow < 0 ? undefined : `adding it to this member's contribution overflows float32 at element ${overflow} of the chunk`;
  }

  private chunk(segment: number, offset: number): Chunk {
    const span = this.span(segment);
    const start = span.start + offset;
    const length = Math.min(this.chunkUnit, span.length - offset);
    return { start, length, withTail: this.hasTail && start + length === this.acc.length };
  }

  private span(segment: number): Span {
    return this.spans[segment] as Span;
  }
}
