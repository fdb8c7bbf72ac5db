import { mulberry32 } from "@crowdtrain/protocol";
import type { Link } from "./network.ts";

/**
 * The volunteers the simulator draws: link and compute distributions, each a log-normal given by
 * its median and the standard deviation of its logarithm (so the 10th and 90th percentiles are the
 * median ÷ and × e^(1.28σ)). Defaults and where they come from are in packages/sim/README.md; every
 * figure is an input, printed with the results, not a claim.
 */
export type LogNormal = { median: number; sigma: number };

export type Population = {
  /** Uplink, bits per second. */
  upBps: LogNormal;
  /** Downlink = uplink × this (home links are asymmetric). */
  downOverUp: number;
  /** Round trip from a peer to the network core, ms (a path is two of them). */
  rttMs: LogNormal;
  /** Training samples a peer computes per second (forward, backward, read-back). */
  samplesPerSecond: LogNormal;
  /** A straggler computes this many times slower; `stragglerShare` of peers are. */
  stragglerSlowdown: number;
  stragglerShare: number;
};

/** The reference link (20 Mbit/s, 50 ms RTT) at the median, with a home-broadband spread. */
export const DEFAULT_POPULATION: Population = {
  upBps: { median: 20e6, sigma: 0.8 },
  downOverUp: 4,
  rttMs: { median: 25, sigma: 0.5 },
  samplesPerSecond: { median: 2_000, sigma: 0.7 },
  stragglerSlowdown: 5,
  stragglerShare: 0.05,
};

/** Uniform links and speeds: every draw the median (for validation against a homogeneous bench). */
export function homogeneous(population: Population): Population {
  const flat = (d: LogNormal): LogNormal => ({ median: d.median, sigma: 0 });
  return { ...population, upBps: flat(population.upBps), rttMs: flat(population.rttMs), samplesPerSecond: flat(population.samplesPerSecond), stragglerShare: 0 };
}

export type Volunteer = { link: Link; samplesPerSecond: number };

/** Seeded draws of volunteers from a population. */
export class Draws {
  private readonly random: () => number;

  constructor(seed: number) {
    this.random = mulberry32(seed);
  }

  uniform(): number {
    return this.random();
  }

  /** An exponential wait with this mean (Poisson arrivals). */
  exponential(mean: number): number {
    return -Math.log(1 - this.random()) * mean;
  }

  logNormal({ median, sigma }: LogNormal): number {
    if (sigma === 0) return median;
    // Box–Muller; 1 − u keeps the logarithm finite.
    const normal = Math.sqrt(-2 * Math.log(1 - this.random())) * Math.cos(2 * Math.PI * this.random());
    return median * Math.exp(sigma * normal);
  }

  volunteer(population: Population): Volunteer {
    const upBps = this.logNormal(population.upBps);
    const slow = this.random() < population.stragglerShare ? population.stragglerSlowdown : 1;
    return {
      link: { upBps, downBps: upBps * population.downOverUp, rttMs: this.logNormal(population.rttMs) },
      samplesPerSecond: this.logNormal(population.samplesPerSecond) / slow,
    };
  }
}
