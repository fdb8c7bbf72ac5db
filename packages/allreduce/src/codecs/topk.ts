import { FLOAT32_U, viewOf } from "./types.ts";

/**
 * Top-k sparsification, as blocks of (index, value) pairs that every member all-gathers.
 *
 * A member keeps the k = max(1, ceil(fraction·L)) elements of largest magnitude of its weighted
 * gradient samples·g (L elements; k = 0 when L = 0), ties broken by the lower index, so the choice
 * is a pure function of the vector. Its block is its exact sample count and those k pairs, indices
 * strictly increasing. A ring cannot add sparse vectors without densifying them, so the blocks are
 * not summed on the way: each travels the ring unchanged (ring-topk.ts) and every member adds all N
 * of them itself, in ring-position order, which makes every member's sums the same bits.
 *
 * Chunk c of a block (frame offset c·P pairs, P = topkPairsPerChunk(frameBytes)), little-endian:
 *   c = 0: [uint32 samples][pair] × min(P, k);   c > 0: [pair] × min(P, k − c·P)
 *   pair = [uint32 index][float32 value]
 * Every block has max(1, ceil(k/P)) chunks: with k = 0 one chunk carries just the count.
 * Values are float32 as computed (exact): the loss is only what is not sent, which error feedback
 * (error-feedback.ts) carries to the next round.
 */
export const TOPK_PAIR_BYTES = 8;
export const TOPK_COUNT_BYTES = 4;

/** One member's contribution: its sample count and its k largest weighted values. */
export type SparseBlock = { samples: number; indices: Uint32Array; values: Float32Array };

/** k for a vector of `length` elements; the same on every member, since fraction and length are. */
export function topkCount(length: number, fraction: number): number {
  if (!(fraction > 0 && fraction <= 1)) throw new RangeError(`topkFraction must be in (0, 1], got ${fraction}`);
  return length === 0 ? 0 : Math.min(length, Math.max(1, Math.ceil(fraction * length)));
}

/** Pairs per frame so that the first chunk, which also holds the count, fits in `frameBytes`; 0 if none fits. */
export function topkPairsPerChunk(frameBytes: number): number {
  return Math.max(0, Math.floor((frameBytes - TOPK_COUNT_BYTES) / TOPK_PAIR_BYTES));
}

export function topkChunkCount(k: number, pairsPerChunk: number): number {
  return Math.max(1, Math.ceil(k / pairsPerChunk));
}

/** Pairs in chunk `chunk` of a block of k pairs. */
export function topkChunkPairs(k: number, pairsPerChunk: number, chunk: number): number {
  return Math.max(0, Math.min(pairsPerChunk, k - chunk * pairsPerChunk));
}

/**
 * Indices (increasing) of the k largest |values[e]|, ties to the lower index: all values above the
 * k-th largest magnitude, then the lowest indices among those equal to it.
 */
export function selectTopk(values: Float32Array, k: number): Uint32Array {
  if (!Number.isInteger(k) || k < 0 || k > values.length) throw new RangeError(`k must be an integer in [0, ${values.length}], got ${k}`);
  const chosen = new Uint32Array(k);
  if (k === 0) return chosen;
  const magnitudes = values.map(Math.abs);
  const threshold = kthLargest(magnitudes, k);
  let above = 0;
  for (let e = 0; e < values.length; e++) if (Math.abs(values[e] as number) > threshold) above++;
  let ties = k - above;
  let next = 0;
  for (let e = 0; e < values.length && next < k; e++) {
    const magnitude = Math.abs(values[e] as number);
    if (magnitude > threshold || (magnitude === threshold && ties-- > 0)) chosen[next++] = e;
  }
  return chosen;
}

/** The k-th largest value (k ≥ 1) of `a`, which it reorders: quickselect, median-of-three pivots. */
function kthLargest(a: Float32Array, k: number): number {
  const target = k - 1; // position in descending order
  let [low, high] = [0, a.length - 1];
  while (low < high) {
    const pivot = medianOfThree(a[low] as number, a[(low + high) >>> 1] as number, a[high] as number);
    let [i, j] = [low, high];
    while (i <= j) {
      while ((a[i] as number) > pivot) i++;
      while ((a[j] as number) < pivot) j--;
      if (i <= j) {
        [a[i], a[j]] = [a[j] as number, a[i] as number];
        i++;
        j--;
      }
    }
    // [low, j] ≥ pivot ≥ [i, high]; anything strictly between equals the pivot.
    if (target <= j) high = j;
    else if (target >= i) low = i;
    else return pivot;
  }
  return a[target] as number;
}

function medianOfThree(a: number, b: number, c: number): number {
  return Math.max(Math.min(a, b), Math.min(Math.max(a, b), c));
}

/** Chunk `chunk` of `block` as bytes. */
export function encodeTopkChunk(block: SparseBlock, chunk: number, pairsPerChunk: number): Uint8Array {
  const first = chunk * pairsPerChunk;
  const pairs = topkChunkPairs(block.indices.length, pairsPerChunk, chunk);
  const head = chunk === 0 ? TOPK_COUNT_BYTES : 0;
  const bytes = new Uint8Array(head + pairs * TOPK_PAIR_BYTES);
  const view = viewOf(bytes);
  if (chunk === 0) view.setUint32(0, block.samples, true);
  for (let p = 0; p < pairs; p++) {
    view.setUint32(head + p * TOPK_PAIR_BYTES, block.indices[first + p] as number, true);
    view.setFloat32(head + p * TOPK_PAIR_BYTES + 4, block.values[first + p] as number, true);
  }
  return bytes;
}

export type DecodedTopkChunk = { samples: number | undefined; indices: Uint32Array; values: Float32Array } | { problem: string };

/**
 * Decodes chunk `chunk` (expected to hold `pairs` pairs) of a block over a vector of `length`
 * elements. Refuses a wrong size, a count that is not a whole number in [0, maxSamples], an index out
 * of range or not above the previous one, and a non-finite value. Order across chunks is the caller's
 * check (chunks arrive in any order).
 */
export function decodeTopkChunk(bytes: Uint8Array, chunk: number, pairs: number, length: number, maxSamples: number): DecodedTopkChunk {
  const head = chunk === 0 ? TOPK_COUNT_BYTES : 0;
  const expected = head + pairs * TOPK_PAIR_BYTES;
  if (bytes.byteLength !== expected) return { problem: `has ${bytes.byteLength} payload bytes, expected ${expected} (${pairs} pairs${head > 0 ? " and the count" : ""}, topk)` };
  const view = viewOf(bytes);
  const samples = chunk === 0 ? view.getUint32(0, true) : undefined;
  if (samples !== undefined && samples > maxSamples) return { problem: `sample count ${samples} exceeds ${maxSamples}` };
  const indices = new Uint32Array(pairs);
  const values = new Float32Array(pairs);
  for (let p = 0; p < pairs; p++) {
    const index = view.getUint32(head + p * TOPK_PAIR_BYTES, true);
    const value = view.getFloat32(head + p * TOPK_PAIR_BYTES + 4, true);
    if (index >= length) return { problem: `index ${index} of pair ${p} is out of range for ${length} elements` };
    if (p > 0 && index <= (indices[p - 1] as number)) return { problem: `index ${index} of pair ${p} does not increase (previous ${indices[p - 1]})` };
    if (!Number.isFinite(value)) return { problem: `non-finite value ${value} at index ${index}` };
    indices[p] = index;
    values[p] = value;
  }
  return { samples, indices, values };
}

/** Σ of the blocks as a dense float32 vector, added in the order given (ring order: the same bits everywhere). */
export function sumBlocks(blocks: readonly SparseBlock[], length: number): Float32Array {
  const sums = new Float32Array(length);
  for (const block of blocks) {
    for (let p = 0; p < block.indices.length; p++) {
      const index = block.indices[p] as number;
      sums[index] = (sums[index] as number) + (block.values[p] as number); // rounded once by the store
    }
  }
  return sums;
}

/**
 * Worst-case |ŝ − s| of one element, s = Σ_k c_k the exact sum of the N members' full weighted
 * values and ŝ the float32 sum of what they sent: what was not sent (Σ_k |c_k − sent_k|, carried by
 * error feedback, not lost) plus N − 1 float32 roundings of the running sum (γ_{N-1}·Σ_k |sent_k|).
 */
export function topkSumErrorBound(n: number, sentAbsSum: number, unsentAbsSum: number): number {
  const gamma = ((n - 1) * FLOAT32_U) / (1 - (n - 1) * FLOAT32_U);
  return unsentAbsSum + gamma * sentAbsSum;
}
