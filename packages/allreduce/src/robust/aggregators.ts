/**
 * Robust aggregators of K contributions of one shard (pure, deterministic).
 *
 * Every function takes K vectors of equal length (one per contributor, in plan order) and returns
 * the aggregate as a Float32Array plus one stat per contributor. Determinism: all arithmetic is
 * IEEE-754 float64 (+, −, ×, ÷ and Math.sqrt, which every JS engine rounds correctly, so every
 * engine gets the same bits; no Math.pow/exp/hypot, whose accuracy is implementation-defined),
 * loops run in a fixed order (coordinates ascending, contributors in input order), and the result
 * is rounded once to float32 by the store. Per-coordinate order statistics sort a copy with a total
 * order (−0 before +0), so an unstable sort cannot change a bit. Inputs must be finite (the
 * all-reduce checks every frame); a non-finite input is refused with a RangeError.
 *
 * The direct all-reduce gives each shard's bits to every member from its one owner, so bit-identity
 * across members does not depend on this determinism; it matters for audits that recompute an
 * owner's aggregate and for reproducing a round.
 */

export type ContributorStat = {
  /** Position of the contribution in the input (plan order). */
  index: number;
  /** L2 distance (float64) from the contribution to the float32 aggregate. */
  distance: number;
  /**
   * centered-clip: its difference was scaled down to the radius tau in the last iteration.
   * trimmed-mean: it lies farther than tau from the aggregate (tau by the same rule CenteredClip
   * uses). Per-coordinate trimming alone is not a signal there: with the default trim every
   * contributor is trimmed on most coordinates (see `trimmedFraction`). mean: never.
   */
  clipped: boolean;
  /** trimmed-mean: fraction of coordinates on which it was among the dropped values; 0 otherwise. */
  trimmedFraction: number;
};

export type Aggregate = {
  value: Float32Array;
  contributors: ContributorStat[];
  /** The clipping radius used (centered-clip) or the outlier radius of the stats (trimmed-mean). */
  tau: number | undefined;
};

export type CenteredClipOptions = {
  /** Update rounds after the coordinate-wise median start; default DEFAULT_CLIP_ITERATIONS. */
  iterations?: number;
  /** Fixed clipping radius. When absent: tauFactor × the median distance of the contributions to their median. */
  tau?: number;
  /** Multiplier of the adaptive radius; default DEFAULT_TAU_FACTOR. */
  tauFactor?: number;
};

/** Bounded work per round: CenteredClip does iterations × K × 2 passes over the shard. */
export const DEFAULT_CLIP_ITERATIONS = 5;
export const MAX_CLIP_ITERATIONS = 100;

/**
 * The default radius is DEFAULT_TAU_FACTOR × median_k ‖x_k − m‖ (m = coordinate-wise median).
 * Why adaptive: gradient norms change by orders of magnitude over training and between models, so a
 * fixed tau is either too small (honest gradients clipped, slow) or too large (attackers pass).
 * Why the median distance: with f ≤ ⌊(K−1)/2⌋ attackers, at least ⌈(K+1)/2⌉ distances are honest,
 * so the median distance is at most the largest honest one: attackers cannot inflate tau.
 * Why 2: honest contributions scatter around their mean at similar distances (the noise of K
 * independent mini-batch gradients), so a radius of twice the typical distance leaves them unclipped
 * (CenteredClip is then the exact mean of the honest ones plus at most f·tau/(K−f) of attacker pull),
 * while a vector scaled by 1e4 or filled with 3e38 is clipped to tau. Measured (test/robust.test.ts
 * model: honest noise norms varying ×0.5–1.5, N ∈ {5, 7}, up to ⌊(N−1)/2⌋ attackers): with 2 no
 * honest contributor was ever clipped and every attacker was; with 1.5 honest ones were clipped and
 * the bound above was exceeded by 4%. Larger factors only let attackers pull harder (error ∝ tau).
 */
export const DEFAULT_TAU_FACTOR = 2;

/** The largest trim that still leaves a majority-robust aggregate: tolerates ⌊(K−1)/2⌋ attackers. */
export function defaultTrim(k: number): number {
  return Math.floor((k - 1) / 2);
}

/** Unweighted coordinate-wise mean: one contributor, one vote. */
export function unweightedMean(vectors: readonly Float32Array[]): Aggregate {
  const { k, length } = checkVectors(vectors);
  const value = new Float32Array(length);
  for (let e = 0; e < length; e++) {
    let sum = 0;
    for (let c = 0; c < k; c++) sum += (vectors[c] as Float32Array)[e] as number;
    value[e] = sum / k;
  }
  return { value, contributors: stats(vectors, value, () => false), tau: undefined };
}

/**
 * Coordinate-wise trimmed mean: on each coordinate, drop the `trim` largest and `trim` smallest of
 * the K values and average the K − 2·trim others (float64 sum in ascending order, one rounding).
 * Requires 0 ≤ 2·trim < K. With trim = ⌊(K−1)/2⌋ it is the coordinate-wise median.
 * Bound: with f ≤ trim attackers, every output coordinate lies within the range of the honest
 * values of that coordinate (each kept value is bracketed by honest ones).
 */
export function trimmedMean(vectors: readonly Float32Array[], trim: number): Aggregate {
  const { k, length } = checkVectors(vectors);
  if (!Number.isInteger(trim) || trim < 0 || 2 * trim >= k) {
    throw new RangeError(`trim must be an integer with 0 <= 2*trim < K=${k}, got ${trim}`);
  }
  const value = new Float32Array(length);
  const median = new Float64Array(length);
  const trimmed = new Uint32Array(k);
  const sorted = new Float64Array(k);
  const kept = k - 2 * trim;
  for (let e = 0; e < length; e++) {
    sortColumn(vectors, e, sorted);
    const lo = sorted[trim] as number;
    const hi = sorted[k - 1 - trim] as number;
    let sum = 0;
    for (let j = trim; j < k - trim; j++) sum += sorted[j] as number;
    value[e] = sum / kept;
    median[e] = middle(sorted);
    // Values equal to a cut value are counted as kept: which copy of a tie was "dropped" is arbitrary.
    if (trim > 0) {
      for (let c = 0; c < k; c++) {
        const x = (vectors[c] as Float32Array)[e] as number;
        if (x < lo || x > hi) trimmed[c] = (trimmed[c] as number) + 1;
      }
    }
  }
  const tau = DEFAULT_TAU_FACTOR * medianDistance(vectors, median);
  const contributors = stats(vectors, value, (_, distance) => distance > tau);
  for (const stat of contributors) stat.trimmedFraction = length === 0 ? 0 : (trimmed[stat.index] as number) / length;
  return { value, contributors, tau };
}

/**
 * CenteredClip (Karimireddy, He & Jaggi 2021; the aggregator of BTARD, Gorbunov et al. 2022):
 * start from the coordinate-wise median m, then `iterations` rounds of
 *   v ← v + (1/K) Σ_k clip_tau(x_k − v),   clip_tau(d) = d · min(1, tau / ‖d‖).
 * Each step moves v to a convex combination of v and the x_k, so v never leaves their convex hull
 * (no overflow with 3e38 inputs). Bound at the fixed point, when the K − f honest contributions are
 * within tau of v: ‖v − honest mean‖ ≤ f·tau / (K − f).
 */
export function centeredClip(vectors: readonly Float32Array[], options: CenteredClipOptions = {}): Aggregate {
  const { k, length } = checkVectors(vectors);
  const iterations = options.iterations ?? DEFAULT_CLIP_ITERATIONS;
  if (!Number.isInteger(iterations) || iterations < 0 || iterations > MAX_CLIP_ITERATIONS) {
    throw new RangeError(`iterations must be an integer in [0, ${MAX_CLIP_ITERATIONS}], got ${iterations}`);
  }
  const tauFactor = options.tauFactor ?? DEFAULT_TAU_FACTOR;
  if (!(Number.isFinite(tauFactor) && tauFactor > 0)) throw new RangeError(`tauFactor must be a positive finite number, got ${tauFactor}`);
  if (options.tau !== undefined && !(Number.isFinite(options.tau) && options.tau >= 0)) {
    throw new RangeError(`tau must be a finite number >= 0, got ${options.tau}`);
  }
  const v = coordinateMedian(vectors);
  const tau = options.tau ?? tauFactor * medianDistance(vectors, v);
  const delta = new Float64Array(length);
  const clippedLast = new Uint8Array(k);
  for (let iteration = 0; iteration < iterations; iteration++) {
    delta.fill(0);
    for (let c = 0; c < k; c++) {
      const x = vectors[c] as Float32Array;
      let squares = 0;
      for (let e = 0; e < length; e++) {
        const d = (x[e] as number) - (v[e] as number);
        squares += d * d;
      }
      const norm = Math.sqrt(squares);
      const scale = norm > tau ? tau / norm : 1;
      clippedLast[c] = norm > tau ? 1 : 0;
      for (let e = 0; e < length; e++) delta[e] = (delta[e] as number) + scale * ((x[e] as number) - (v[e] as number));
    }
    for (let e = 0; e < length; e++) v[e] = (v[e] as number) + (delta[e] as number) / k;
  }
  const value = Float32Array.from(v);
  const clipped = iterations > 0 ? (index: number) => clippedLast[index] === 1 : (_: number, distance: number) => distance > tau;
  return { value, contributors: stats(vectors, value, clipped), tau };
}

/** Coordinate-wise median in float64 (the mean of the two middle values when K is even). */
export function coordinateMedian(vectors: readonly Float32Array[]): Float64Array {
  const { k, length } = checkVectors(vectors);
  const out = new Float64Array(length);
  const sorted = new Float64Array(k);
  for (let e = 0; e < length; e++) {
    sortColumn(vectors, e, sorted);
    out[e] = middle(sorted);
  }
  return out;
}

function middle(sorted: Float64Array): number {
  const k = sorted.length;
  const half = k >> 1;
  return k % 2 === 1 ? (sorted[half] as number) : ((sorted[half - 1] as number) + (sorted[half] as number)) / 2;
}

/** Median over contributors of ‖x_k − center‖: the scale of the honest spread (see DEFAULT_TAU_FACTOR). */
function medianDistance(vectors: readonly Float32Array[], center: ArrayLike<number>): number {
  const distances = new Float64Array(vectors.length);
  for (let c = 0; c < vectors.length; c++) distances[c] = distance(vectors[c] as Float32Array, center);
  totalOrderSort(distances);
  return middle(distances);
}

function distance(x: Float32Array, center: ArrayLike<number>): number {
  let squares = 0;
  for (let e = 0; e < x.length; e++) {
    const d = (x[e] as number) - (center[e] as number);
    squares += d * d;
  }
  return Math.sqrt(squares);
}

function stats(
  vectors: readonly Float32Array[],
  value: Float32Array,
  clipped: (index: number, distance: number) => boolean,
): ContributorStat[] {
  return vectors.map((x, index) => {
    const d = distance(x, value);
    return { index, distance: d, clipped: clipped(index, d), trimmedFraction: 0 };
  });
}

/** Copies coordinate e of every vector into `out` and sorts it in the total order. */
function sortColumn(vectors: readonly Float32Array[], e: number, out: Float64Array): void {
  for (let c = 0; c < vectors.length; c++) out[c] = (vectors[c] as Float32Array)[e] as number;
  totalOrderSort(out);
}

/** Ascending, with −0 before +0 (inputs are finite). Insertion sort for the usual small K. */
function totalOrderSort(values: Float64Array): void {
  if (values.length > 32) {
    // %TypedArray%.prototype.sort without a comparator is specified as a numeric total order
    // (−0 before +0), so its result does not depend on the engine's algorithm.
    values.sort();
    return;
  }
  for (let i = 1; i < values.length; i++) {
    const x = values[i] as number;
    let j = i - 1;
    while (j >= 0 && before(x, values[j] as number)) {
      values[j + 1] = values[j] as number;
      j--;
    }
    values[j + 1] = x;
  }
}

function before(a: number, b: number): boolean {
  return a < b || (a === 0 && b === 0 && 1 / a < 1 / b);
}

function checkVectors(vectors: readonly Float32Array[]): { k: number; length: number } {
  const k = vectors.length;
  if (k === 0) throw new RangeError("no contributions to aggregate");
  const length = (vectors[0] as Float32Array).length;
  for (let c = 0; c < k; c++) {
    const x = vectors[c] as Float32Array;
    if (x.length !== length) throw new RangeError(`contribution ${c} has ${x.length} elements, contribution 0 has ${length}`);
    for (let e = 0; e < length; e++) {
      if (!Number.isFinite(x[e])) throw new RangeError(`contribution ${c} has non-finite value ${x[e]} at element ${e}`);
    }
  }
  return { k, length };
}
