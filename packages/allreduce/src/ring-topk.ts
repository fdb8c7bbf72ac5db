import { decodeTopkChunk, encodeTopkChunk, selectTopk, sumBlocks, topkChunkCount, topkChunkPairs, topkCount, topkPairsPerChunk, type SparseBlock } from "./codecs/topk.ts";
import { MAX_SAMPLES, weightedContribution } from "./reduce.ts";
import type { RingWork, WorkResult } from "./ring-work.ts";

/** A member's block as it arrives, chunk by chunk, in any order. */
type Incoming = SparseBlock & { samples: number; received: Uint8Array };

/**
 * topk over the ring: an all-gather of sparse blocks (codecs/topk.ts). Segment m of the frames is the
 * block of the member at ring position m; it starts at m and is forwarded unchanged N−1 times, so
 * each member ends with all N blocks and adds them itself, in ring-position order.
 *
 * Error feedback: `residual` is what this member's gradient lost, in gradient units (the gradient
 * it passed, not multiplied by samples): gradient[e] where e was not sent, 0 where it was; all of the
 * gradient when samples = 0 (its weighted values are all 0, so nothing of it reached the mean).
 */
export class TopkWork implements RingWork {
  readonly partials = undefined;
  readonly chunkUnit: number;
  private readonly length: number;
  private readonly k: number;
  private readonly blocks: Incoming[];
  private readonly residual: Float32Array;

  constructor(gradient: Float32Array, samples: number, n: number, private readonly position: number, fraction: number, frameBytes: number) {
    this.chunkUnit = topkPairsPerChunk(frameBytes);
    if (this.chunkUnit === 0) throw new RangeError(`frameBytes=${frameBytes} cannot hold the sample count and one topk pair`);
    this.length = gradient.length;
    this.k = topkCount(this.length, fraction);
    const weighted = weightedContribution(gradient, samples).subarray(0, this.length);
    const indices = selectTopk(weighted, this.k);
    const values = Float32Array.from(indices, (index) => weighted[index] as number);
    this.residual = gradient.slice();
    if (samples > 0) for (const index of indices) this.residual[index] = 0;
    const chunks = topkChunkCount(this.k, this.chunkUnit);
    this.blocks = Array.from({ length: n }, () => ({ samples: 0, indices: new Uint32Array(this.k), values: new Float32Array(this.k), received: new Uint8Array(chunks) }));
    this.blocks[position] = { samples, indices, values, received: new Uint8Array(chunks).fill(1) };
  }

  chunkCount(): number {
    return topkChunkCount(this.k, this.chunkUnit);
  }

  finalize(segment: number, offset: number): { bytes: Uint8Array } | { problem: string } {
    if (segment !== this.position) return { problem: `segment ${segment} is not this member's block (${this.position})` };
    return { bytes: encodeTopkChunk(this.block(segment), offset / this.chunkUnit, this.chunkUnit) };
  }

  gather(segment: number, offset: number, payload: Uint8Array): string | undefined {
    const chunk = offset / this.chunkUnit;
    const decoded = decodeTopkChunk(payload, chunk, topkChunkPairs(this.k, this.chunkUnit, chunk), this.length, MAX_SAMPLES);
    if ("problem" in decoded) return decoded.problem;
    const block = this.block(segment);
    const problem = this.orderAcrossChunks(block, chunk, decoded.indices);
    if (problem !== undefined) return problem;
    block.indices.set(decoded.indices, offset);
    block.values.set(decoded.values, offset);
    if (decoded.samples !== undefined) block.samples = decoded.samples;
    block.received[chunk] = 1;
    return undefined;
  }

  result(): WorkResult | { noSamples: true } {
    // Whole numbers below 2^24 each, summed in float64: exact, and the same on every member.
    const totalSamples = this.blocks.reduce((sum, block) => sum + block.samples, 0);
    if (totalSamples === 0) return { noSamples: true };
    const sums = sumBlocks(this.blocks, this.length);
    const mean = new Float32Array(this.length);
    for (let e = 0; e < this.length; e++) mean[e] = (sums[e] as number) / totalSamples;
    return { mean, totalSamples, residual: this.residual };
  }

  /** Indices must increase across chunk boundaries too; each boundary is checked when its second chunk arrives. */
  private orderAcrossChunks(block: Incoming, chunk: number, indices: Uint32Array): string | undefined {
    if (indices.length === 0) return undefined;
    const first = chunk * this.chunkUnit;
    const before = block.received[chunk - 1] === 1 ? block.indices[first - 1] : undefined;
    if (before !== undefined && before >= (indices[0] as number)) return `index ${indices[0]} at pair ${first} does not increase (previous chunk ends at ${before})`;
    const next = block.received[chunk + 1] === 1 ? block.indices[first + indices.length] : undefined;
    const last = indices[indices.length - 1] as number;
    if (next !== undefined && last >= next) return `index ${last} at pair ${first + indices.length - 1} does not increase (next chunk starts at ${next})`;
    return undefined;
  }

  private block(segment: number): Incoming {
    return this.blocks[segment] as Incoming;
  }
}
