/** Element-wise kernels of the reduction, kept apart so their exact float behaviour is tested alone. */

/** Largest sample count of one member: a float32 carries it exactly. */
export const MAX_SAMPLES = 2 ** 24;

/** Index of the first NaN or ±Infinity in `values`, or -1. */
export function firstNonFinite(values: Float32Array): number {
  for (let k = 0; k < values.length; k++) {
    if (!Number.isFinite(values[k])) return k;
  }
  return -1;
}

/**
 * target[at + k] = target[at + k] + incoming[k], rounded to float32 by the store. The sum of two
 * float32 values computed in float64 and rounded once is the correctly rounded float32 sum, so every
 * JS engine gets the same bits.
 */
export function addInto(target: Float32Array, at: number, incoming: Float32Array): void {
  for (let k = 0; k < incoming.length; k++) {
    target[at + k] = (target[at + k] as number) + (incoming[k] as number);
  }
}

/**
 * addInto, unless some sum overflows float32: then nothing is added and the element's index (in
 * `incoming`) comes back. An overflowing running sum would reach the codecs as Infinity.
 */
export function addIntoFinite(target: Float32Array, at: number, incoming: Float32Array): number {
  for (let k = 0; k < incoming.length; k++) {
    if (!Number.isFinite(Math.fround((target[at + k] as number) + (incoming[k] as number)))) return k;
  }
  addInto(target, at, incoming);
  return -1;
}

/** The vector a peer contributes: [samples * g_0, ..., samples * g_{L-1}, samples]. */
export function weightedContribution(gradient: Float32Array, samples: number): Float32Array {
  const out = new Float32Array(gradient.length + 1);
  for (let k = 0; k < gradient.length; k++) out[k] = (gradient[k] as number) * samples;
  out[gradient.length] = samples;
  return out;
}

/** In place: sums[k] / total for every gradient element; returns the gradient part as a view. */
export function divideByTotal(sums: Float32Array): Float32Array {
  const length = sums.length - 1;
  const total = sums[length] as number;
  for (let k = 0; k < length; k++) sums[k] = (sums[k] as number) / total;
  return sums.subarray(0, length);
}
