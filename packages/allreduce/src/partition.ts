/**
 * How a vector is cut up for the ring: N contiguous segments whose sizes differ by at most one
 * (the first `length % n` segments get the extra element), each cut into frames of at most
 * `chunkElems` elements. Pure; the same inputs give the same cut on every peer.
 */
export type Span = { readonly start: number; readonly length: number };

export function partition(length: number, n: number): Span[] {
  if (!Number.isInteger(length) || length < 0) throw new RangeError(`length must be a non-negative integer, got ${length}`);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`n must be a positive integer, got ${n}`);
  const base = Math.floor(length / n);
  const extra = length % n;
  const spans: Span[] = [];
  let start = 0;
  for (let k = 0; k < n; k++) {
    const size = base + (k < extra ? 1 : 0);
    spans.push({ start, length: size });
    start += size;
  }
  return spans;
}

/** Element offsets (relative to the segment) of the chunks of a segment; none for an empty segment. */
export function chunkOffsets(segmentLength: number, chunkElems: number): number[] {
  if (!Number.isInteger(chunkElems) || chunkElems < 1) throw new RangeError(`chunkElems must be a positive integer, got ${chunkElems}`);
  const offsets: number[] = [];
  for (let offset = 0; offset < segmentLength; offset += chunkElems) offsets.push(offset);
  return offsets;
}

export function chunkCount(segmentLength: number, chunkElems: number): number {
  return Math.ceil(segmentLength / chunkElems);
}
