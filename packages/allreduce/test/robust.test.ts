import { describe, expect, it } from "vitest";
import { centeredClip, coordinateMedian, defaultTrim, DEFAULT_TAU_FACTOR, trimmedMean, unweightedMean, type Aggregate } from "../src/index.ts";
import { sameBits } from "./harness.ts";
import { seededRandom } from "./memory-network.ts";

const U = 2 ** -24; // float32 unit roundoff

// ---------- float64 references, written independently of the implementation (plain arrays, Array#sort) ----------

function columns(vectors: Float32Array[]): number[][] {
  const length = vectors[0]!.length;
  return Array.from({ length }, (_, e) => vectors.map((v) => v[e]!));
}

function refMedian(vectors: Float32Array[]): number[] {
  return columns(vectors).map((col) => {
    const s = [...col].sort((a, b) => a - b);
    const h = Math.floor(s.length / 2);
    return s.length % 2 === 1 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
  });
}

function refTrimmedMean(vectors: Float32Array[], trim: number): number[] {
  return columns(vectors).map((col) => {
    const kept = [...col].sort((a, b) => a - b).slice(trim, col.length - trim);
    return kept.reduce((s, x) => s + x, 0) / kept.length;
  });
}

const norm64 = (d: number[]): number => Math.sqrt(d.reduce((s, x) => s + x * x, 0));

function refCenteredClip(vectors: Float32Array[], iterations: number, tauFactor: number): { value: number[]; tau: number } {
  const xs = vectors.map((v) => Array.from(v));
  let v = refMedian(vectors);
  const distances = xs.map((x) => norm64(x.map((xe, e) => xe - v[e]!))).sort((a, b) => a - b);
  const h = Math.floor(distances.length / 2);
  const tau = tauFactor * (distances.length % 2 === 1 ? distances[h]! : (distances[h - 1]! + distances[h]!) / 2);
  for (let it = 0; it < iterations; it++) {
    const step = v.map(() => 0);
    for (const x of xs) {
      const diff = x.map((xe, e) => xe - v[e]!);
      const n = norm64(diff);
      const scale = n > tau ? tau / n : 1;
      diff.forEach((d, e) => (step[e]! += scale * d));
    }
    v = v.map((ve, e) => ve + step[e]! / xs.length);
  }
  return { value: v, tau };
}

/** Random vectors with mixed magnitudes and signs, optionally with wild outliers mixed in. */
function randomVectors(k: number, length: number, seed: number, outliers = 0): Float32Array[] {
  const random = seededRandom(seed);
  return Array.from({ length: k }, (_, c) =>
    Float32Array.from({ length }, () => {
      const x = (random() - 0.5) * 10 ** Math.floor(random() * 6 - 3);
      return c < outliers ? x * 1e6 + 1e3 : x;
    }),
  );
}

/** Largest |got - ref| over the elements, in units of (u·|ref| + absolute·scale). */
function worstError(got: Float32Array, ref: number[], absolute: number, scale: number): number {
  let worst = 0;
  for (let e = 0; e < ref.length; e++) {
    const allowed = U * Math.abs(ref[e]!) + absolute * scale;
    const error = Math.abs(got[e]! - ref[e]!);
    worst = Math.max(worst, allowed === 0 ? (error === 0 ? 0 : Infinity) : error / allowed);
  }
  return worst;
}

const maxAbs = (vectors: Float32Array[]): number => vectors.reduce((m, v) => v.reduce((mm, x) => Math.max(mm, Math.abs(x)), m), 0);

describe("robust aggregators against float64 references", () => {
  const shapes: [k: number, length: number][] = [
    [1, 7],
    [2, 7],
    [3, 1],
    [4, 257],
    [5, 257],
    [8, 100],
    [13, 64],
    [40, 33], // above the insertion-sort cut-over: the typed-array sort path
  ];
  for (const [k, length] of shapes) {
    for (const outliers of [0, Math.floor((k - 1) / 2)]) {
      const label = `K=${k}, length=${length}, ${outliers} outliers`;
      const vectors = randomVectors(k, length, 1000 * k + length + outliers, outliers);
      const scale = maxAbs(vectors);

      it(`coordinate median = reference exactly (${label})`, () => {
        expect(Array.from(coordinateMedian(vectors))).toEqual(refMedian(vectors));
      });

      it(`trimmed mean, every trim, within one float32 rounding of the float64 reference (${label})`, () => {
        for (let trim = 0; 2 * trim < k; trim++) {
          const got = trimmedMean(vectors, trim);
          // Stated tolerance: u·|ref| (the final rounding) + 2^-50·max|x| (float64 summation order).
          expect(worstError(got.value, refTrimmedMean(vectors, trim), 2 ** -50, scale)).toBeLessThanOrEqual(1);
        }
      });

      it(`centered clip within one float32 rounding of the float64 reference (${label})`, () => {
        for (const iterations of [0, 1, 5]) {
          const got = centeredClip(vectors, { iterations });
          const ref = refCenteredClip(vectors, iterations, DEFAULT_TAU_FACTOR);
          expect(got.tau).toBeCloseTo(ref.tau, 10);
          // Stated tolerance: u·|ref| + 2^-44·max|x|: both iterate in float64; they differ only by
          // float64 summation order, which clipping (a continuous map) does not amplify.
          expect(worstError(got.value, ref.value, 2 ** -44, scale)).toBeLessThanOrEqual(1);
        }
      });

      it(`unweighted mean within one float32 rounding (${label})`, () => {
        const ref = columns(vectors).map((col) => col.reduce((s, x) => s + x, 0) / k);
        expect(worstError(unweightedMean(vectors).value, ref, 2 ** -50, scale)).toBeLessThanOrEqual(1);
      });
    }
  }

  it("handles 3e38 inputs without overflow (v stays in the convex hull; float64 norms)", () => {
    const honest = randomVectors(4, 50, 5);
    const vectors = [...honest, new Float32Array(50).fill(3e38), new Float32Array(50).fill(-3e38), new Float32Array(50).fill(3.4e38)];
    for (const result of [centeredClip(vectors), trimmedMean(vectors, 3), unweightedMean(vectors)]) {
      expect(result.value.every((x) => Number.isFinite(x))).toBe(true);
      expect(result.contributors.every((c) => Number.isFinite(c.distance))).toBe(true);
    }
    const ref = refCenteredClip(vectors, 5, DEFAULT_TAU_FACTOR);
    expect(worstError(centeredClip(vectors).value, ref.value, 2 ** -44, maxAbs(honest))).toBeLessThanOrEqual(1);
  });

  it("stats: distance to the result, trimmed fraction, clipped flag", () => {
    const vectors = randomVectors(5, 40, 77);
    vectors[4] = vectors[4]!.map((x) => x * 1e4);
    const check = (result: Aggregate): void => {
      result.contributors.forEach((c, index) => {
        expect(c.index).toBe(index);
        expect(c.distance).toBeCloseTo(norm64(Array.from(vectors[index]!, (x, e) => x - result.value[e]!)), 6);
      });
    };
    const cc = centeredClip(vectors);
    check(cc);
    expect(cc.contributors.map((c) => c.clipped)).toEqual([false, false, false, false, true]);
    const tm = trimmedMean(vectors, 2);
    check(tm);
    expect(tm.contributors[4]!.clipped).toBe(true);
    expect(tm.contributors[4]!.trimmedFraction).toBeGreaterThan(0.9);
    for (const c of tm.contributors) expect(c.trimmedFraction).toBeGreaterThan(0); // with trim 2 of 5 everyone is trimmed often
    const mean = unweightedMean(vectors);
    check(mean);
    expect(mean.contributors.every((c) => !c.clipped && c.trimmedFraction === 0)).toBe(true);
  });
});

describe("determinism and edge cases", () => {
  it("same input, same bits; trimmed mean and median do not depend on contributor order", () => {
    const vectors = randomVectors(7, 300, 4, 2);
    expect(sameBits(centeredClip(vectors).value, centeredClip(vectors.map((v) => v.slice())).value)).toBe(true);
    const shuffled = [vectors[3]!, vectors[6]!, vectors[0]!, vectors[5]!, vectors[1]!, vectors[4]!, vectors[2]!];
    expect(sameBits(trimmedMean(vectors, 2).value, trimmedMean(shuffled, 2).value)).toBe(true);
    expect(coordinateMedian(vectors)).toEqual(coordinateMedian(shuffled));
  });

  it("orders -0 before +0 (a total order), so the median of zeros does not depend on input order", () => {
    const a = [Float32Array.of(-0), Float32Array.of(0), Float32Array.of(-0)];
    const b = [Float32Array.of(0), Float32Array.of(-0), Float32Array.of(-0)];
    expect(Object.is(coordinateMedian(a)[0], -0)).toBe(true);
    expect(Object.is(coordinateMedian(b)[0], -0)).toBe(true);
    const c = [Float32Array.of(0), Float32Array.of(-0), Float32Array.of(0)];
    expect(Object.is(trimmedMean(c, 1).value[0], 0)).toBe(true);
  });

  it("K=1 returns the contribution; K=2 centered clip is the mean (no majority to trust)", () => {
    const [x, y] = randomVectors(2, 20, 9);
    expect(sameBits(centeredClip([x!]).value, x!)).toBe(true);
    expect(sameBits(trimmedMean([x!], 0).value, x!)).toBe(true);
    expect(sameBits(centeredClip([x!, y!]).value, unweightedMean([x!, y!]).value)).toBe(true);
  });

  it("zero-length shards aggregate to an empty vector", () => {
    const empty = [new Float32Array(0), new Float32Array(0), new Float32Array(0)];
    for (const r of [centeredClip(empty), trimmedMean(empty, 1), unweightedMean(empty)]) {
      expect(r.value.length).toBe(0);
      expect(r.contributors.map((c) => c.distance)).toEqual([0, 0, 0]);
    }
  });

  it("defaultTrim tolerates a minority: ⌊(K−1)/2⌋", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map(defaultTrim)).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
  });

  it("refuses bad arguments with RangeError", () => {
    const v = randomVectors(3, 4, 1);
    expect(() => trimmedMean(v, 2)).toThrow(/2\*trim < K=3/);
    expect(() => trimmedMean(v, -1)).toThrow(RangeError);
    expect(() => centeredClip(v, { iterations: 1000 })).toThrow(/iterations/);
    expect(() => centeredClip(v, { tau: -1 })).toThrow(/tau/);
    expect(() => centeredClip(v, { tauFactor: 0 })).toThrow(/tauFactor/);
    expect(() => unweightedMean([])).toThrow(/no contributions/);
    expect(() => unweightedMean([new Float32Array(2), new Float32Array(3)])).toThrow(/3 elements/);
    expect(() => coordinateMedian([Float32Array.of(1, Number.NaN)])).toThrow(/non-finite/);
  });
});

// ---------- attackers ----------

function normal(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}
const norm = (x: ArrayLike<number>): number => {
  let s = 0;
  for (let e = 0; e < x.length; e++) s += x[e]! * x[e]!;
  return Math.sqrt(s);
};

type Attack = "x1e4" | "sign-flip" | "3e38" | "noise";
const ATTACKS: Attack[] = ["x1e4", "sign-flip", "3e38", "noise"];

/** What a dishonest member sends instead of its honest gradient `own`. */
function attackVector(attack: Attack, own: Float32Array, random: () => number): Float32Array {
  switch (attack) {
    case "x1e4":
      return own.map((x) => x * 1e4);
    case "sign-flip":
      return own.map((x) => -x);
    case "3e38":
      return own.map(() => 3e38);
    case "noise": {
      const noise = Float64Array.from(own, () => normal(random));
      const scale = norm(own) / norm(noise);
      return Float32Array.from(noise, (x) => x * scale);
    }
  }
}

/**
 * The honest model: a true gradient g and K−f honest members each holding g + noise, with
 * ‖noise_k‖ = ratio·‖g‖·U(0.5, 1.5) (mini-batch noise of varying size). `ratio` is the honest
 * noise-to-signal ratio; no aggregator can promise an error much below it against f colluders.
 */
function honestGradients(count: number, length: number, ratio: number, random: () => number): Float32Array[] {
  const g = Float64Array.from({ length }, () => normal(random));
  return Array.from({ length: count }, () => {
    const noise = Float64Array.from({ length }, () => normal(random));
    const scale = ((0.5 + random()) * ratio * norm(g)) / norm(noise);
    return Float32Array.from(g, (x, e) => x + scale * noise[e]!);
  });
}

function closeness(result: ArrayLike<number>, honest: Float32Array[]): { cosine: number; relative: number; error: number } {
  const mean = new Float64Array(result.length);
  for (const h of honest) for (let e = 0; e < mean.length; e++) mean[e]! += h[e]! / honest.length;
  let dot = 0;
  let diff = 0;
  for (let e = 0; e < mean.length; e++) {
    dot += result[e]! * mean[e]!;
    diff += (result[e]! - mean[e]!) ** 2;
  }
  return { cosine: dot / (norm(result) * norm(mean)), relative: Math.sqrt(diff) / norm(mean), error: Math.sqrt(diff) };
}

/**
 * Thresholds, measured (20 seeds × every N ∈ {5, 7}, f ≤ ⌊(N−1)/2⌋, attack, length 500) with
 * DEFAULT_TAU_FACTOR = 2 and the default trim ⌊(N−1)/2⌋; worst cases seen, as multiples of the
 * noise ratio r: centered-clip relative error ≤ 3.05·r (cosine ≥ 0.955 at r = 0.1, ≥ 0.76 at r = 0.3,
 * both at f = ⌊(N−1)/2⌋ coordinated 3e38 attackers), trimmed mean ≤ 1.58·r (cosine ≥ 0.988 / 0.914).
 * These tests' own cases (4 seeds, length 256) measured ≤ 2.61·r and ≤ 1.34·r, cosine at r = 0.1
 * ≥ 0.967 and ≥ 0.991. The asserted bounds leave a margin above the worst of both; K = 4 (the
 * benchmark's 4 tabs, one attacker) is held to the same bounds.
 */
const BOUNDS = { "centered-clip": 3.5, "trimmed-mean": 1.8 } as const;

describe("with up to ⌊(K−1)/2⌋ attackers the robust result stays near the honest mean; the plain mean does not", () => {
  for (const k of [4, 5, 7]) {
    for (let f = 1; f <= Math.floor((k - 1) / 2); f++) {
      for (const attack of ATTACKS) {
        it(`K=${k}, ${f} attackers, ${attack}`, () => {
          for (const ratio of [0.1, 0.3]) {
            for (let seed = 1; seed <= 4; seed++) {
              const random = seededRandom(seed * 7919 + k * 31 + f * 1000 + ratio * 1e5);
              const honest = honestGradients(k - f, 256, ratio, random);
              const vectors = [...honest, ...honest.slice(0, f).map((h) => attackVector(attack, h, random))];
              const cc = centeredClip(vectors);
              const tm = trimmedMean(vectors, defaultTrim(k));
              const mean = unweightedMean(vectors);
              const ccFit = closeness(cc.value, honest);
              const tmFit = closeness(tm.value, honest);
              expect(ccFit.relative).toBeLessThanOrEqual(BOUNDS["centered-clip"] * ratio);
              expect(tmFit.relative).toBeLessThanOrEqual(BOUNDS["trimmed-mean"] * ratio);
              if (ratio === 0.1) {
                expect(ccFit.cosine).toBeGreaterThan(0.9);
                expect(tmFit.cosine).toBeGreaterThan(0.9);
              }
              // Trimmed mean with f ≤ trim attackers: each coordinate within the honest values' range.
              for (let e = 0; e < tm.value.length; e++) {
                const column = honest.map((h) => h[e]!);
                expect(tm.value[e]!).toBeGreaterThanOrEqual(Math.min(...column));
                expect(tm.value[e]!).toBeLessThanOrEqual(Math.max(...column));
              }
              // CenteredClip's fixed-point bound, with honest members unclipped: ‖v − honest mean‖ ≤ f·tau/(K−f).
              expect(ccFit.error).toBeLessThanOrEqual(((f * cc.tau!) / (k - f)) * 1.001);
              // Every attacker is flagged, no honest member is.
              for (const result of [cc, tm]) {
                expect(result.contributors.map((c) => c.clipped)).toEqual([...honest.map(() => false), ...Array<boolean>(f).fill(true)]);
              }
              const meanFit = closeness(mean.value, honest);
              if (attack === "x1e4") expect(meanFit.relative).toBeGreaterThan(1000);
              if (attack === "3e38") expect(meanFit.relative).toBeGreaterThan(1e36);
              if (attack === "sign-flip") expect(meanFit.relative).toBeGreaterThan((2 * f) / k - 2 * ratio);
            }
          }
        });
      }
    }
  }

  it("without attackers centered clip is the honest mean (nobody clipped); trimmed mean stays within its bound", () => {
    for (const k of [5, 7]) {
      const random = seededRandom(k);
      const honest = honestGradients(k, 256, 0.3, random);
      const cc = centeredClip(honest);
      expect(cc.contributors.every((c) => !c.clipped)).toBe(true);
      expect(closeness(cc.value, honest).relative).toBeLessThan(1e-6);
      expect(closeness(trimmedMean(honest, defaultTrim(k)).value, honest).relative).toBeLessThan(BOUNDS["trimmed-mean"] * 0.3);
    }
  });
});
