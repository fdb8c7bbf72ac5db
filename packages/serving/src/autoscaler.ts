/**
 * How many volunteer tabs should serve the model rather than train it. Pure: no I/O, no clock, no
 * timers; time comes in on each observation. The server calls `observe` about once a second and
 * moves tabs between the training ring and the serving pool until the pool matches `target`.
 *
 * From Knative's KPA (its pod autoscaler), turned from concurrency into request rates:
 * - a stable window (60 s) sizes the pool for steady demand; a short panic window (6 s) detects a
 *   burst. Panic starts when the burst wants at least twice the current pool; in panic the target
 *   only grows, and panic ends once the burst has not recurred for a whole stable window;
 * - the pool is sized to use a share (70%) of each tab's capacity, leaving headroom;
 * - scale-down goes to the highest recommendation of a trailing window (Knative's
 *   scale-down-delay), which also keeps the pool up for that long after a panic ends.
 * From Ray Serve: a scale-up delay (a higher stable recommendation must hold before the pool grows,
 * to the lowest recommendation of that delay) and the per-replica capacity target.
 * Added here: queued requests count as demand to be drained within `backlogDrainMs`, and a request
 * arriving to an empty pool gets a tab at once (cold start), with no delay.
 *
 * Why the defaults differ from Ray's (30 s up, 600 s down): those suit GPU replicas that take
 * minutes to start. A tab already holds the weights and serves within about a second, so the pool
 * grows after 2 s; and every serving tab is a trainer taken out of the ring, so an idle one is
 * given back after 30 s rather than 10 minutes.
 */

export type AutoscalerConfig = {
  /** Serving tabs kept even with no load. */
  minTabs: number;
  maxTabs: number;
  /** Share of a tab's measured capacity the pool is sized to use (Knative's target utilization). */
  targetUtilization: number;
  /** Window the steady-state demand is averaged over (Knative stable window). */
  stableWindowMs: number;
  /** Short window that detects a burst (Knative panic window). */
  panicWindowMs: number;
  /** Panic when the panic window's demand wants at least this many times the current pool (Knative: 2). */
  panicThreshold: number;
  /** A higher stable recommendation must hold this long before the pool grows (outside panic). */
  scaleUpDelayMs: number;
  /** The pool shrinks only to the highest recommendation of this trailing window (Ray/Knative scale-down delay). */
  scaleDownDelayMs: number;
  /** Requests per second one tab is assumed to serve before any tab was measured. */
  defaultCapacityRps: number;
  /** Requests queued now should be drained within this long: they add queued / (this in s) to the demand. */
  backlogDrainMs: number;
};

export const DEFAULT_AUTOSCALER_CONFIG: AutoscalerConfig = {
  minTabs: 0,
  maxTabs: 4,
  targetUtilization: 0.7,
  stableWindowMs: 60_000,
  panicWindowMs: 6_000,
  panicThreshold: 2,
  scaleUpDelayMs: 2_000,
  scaleDownDelayMs: 30_000,
  defaultCapacityRps: 50,
  backlogDrainMs: 2_000,
};

export type LoadSample = {
  now: number;
  /** Requests that arrived since the previous sample. */
  arrivals: number;
  /** Requests waiting for a tab now. */
  queued: number;
  /** Serving tabs now (loaded or loading). */
  poolSize: number;
  /** Mean measured capacity of the serving tabs, requests per second of busy time; undefined: none measured yet. */
  capacityRps: number | undefined;
};

export type ScaleDecision = {
  /** The pool size wanted now, within [minTabs, maxTabs]. */
  target: number;
  /** Whether the autoscaler is in panic mode. */
  panic: boolean;
  /** Why, in words for an operator. */
  reason: string;
  /** True when target differs from the previous decision's target. */
  changed: boolean;
};

export class AutoscalerConfigError extends Error {
  override name = "AutoscalerConfigError";
  constructor(
    readonly field: keyof AutoscalerConfig,
    problem: string,
  ) {
    super(`autoscaler config: ${field} ${problem}`);
  }
}

/**
 * The first sample's arrivals came in over an interval we did not see; it is taken as one second
 * (the server's sampling period). It is also the shortest span a rate is divided by, so a burst at
 * start-up is not diluted over a window that has not passed yet, nor inflated by a tiny span.
 */
const FIRST_INTERVAL_MS = 1_000;

type Observed = {
  now: number;
  arrivals: number;
  /** The stable recommendation (what the scale-up delay looks at). */
  want: number;
  /** What the scale-down delay remembers: the stable recommendation, or the target while in panic (as Knative). */
  recommended: number;
};

type Demand = { rps: number; spanMs: number; want: number };

export class Autoscaler {
  readonly config: AutoscalerConfig;
  private readonly history: Observed[] = [];
  private firstAt: number | undefined;
  private current: number;
  private panic = false;
  /** When the panic condition last held. */
  private panicHeldAt = 0;
  /** Since when the stable recommendation has stayed above the target (undefined: it is not). */
  private aboveSince: number | undefined;

  constructor(config: Partial<AutoscalerConfig> = {}) {
    this.config = { ...DEFAULT_AUTOSCALER_CONFIG, ...config };
    validate(this.config);
    this.current = this.config.minTabs;
  }

  get target(): number {
    return this.current;
  }

  get panicking(): boolean {
    return this.panic;
  }

  observe(sample: LoadSample): ScaleDecision {
    this.accept(sample);
    const { now, queued, poolSize } = sample;
    const c = this.config;
    const capacity = sample.capacityRps !== undefined && sample.capacityRps > 0 && Number.isFinite(sample.capacityRps) ? sample.capacityRps : c.defaultCapacityRps;
    const usable = capacity * c.targetUtilization;
    const backlog = queued / (c.backlogDrainMs / 1000);
    const stable = this.demand(now, c.stableWindowMs, backlog, usable);
    const burst = this.demand(now, c.panicWindowMs, backlog, usable);
    const entry = this.history.at(-1) as Observed;
    entry.want = stable.want;
    const previous = this.current;
    const per = `at ${Math.round(c.targetUtilization * 100)}% of ${fmt(capacity)} req/s per tab`;

    // The burst wants at least threshold times the pool (so more than it: the threshold exceeds 1).
    if (burst.want >= c.panicThreshold * Math.max(poolSize, 1)) {
      this.panicHeldAt = now;
      this.panic = true;
    } else if (this.panic && now - this.panicHeldAt >= c.stableWindowMs) {
      this.panic = false;
    }

    let reason: string;
    if (this.panic) {
      // A burst: grow at once to what the burst wants, and never shrink until the panic ends.
      this.aboveSince = undefined;
      this.current = this.clamp(Math.max(this.current, burst.want));
      entry.recommended = this.current;
      reason = `panic: ${describe(burst, queued)} ${per} wants ${burst.want} (pool ${poolSize})`;
    } else {
      entry.recommended = stable.want;
      reason = `stable: ${describe(stable, queued)} ${per} wants ${stable.want}`;
      if (this.current === 0 && stable.rps > 0) {
        // A request must never wait out a delay while no tab serves.
        this.current = this.clamp(1);
        reason = `cold start: ${describe(stable, queued)} with no serving tab wants 1 at once`;
      }
      reason += this.scaleUp(now, stable.want) ?? this.scaleDown(now, stable.want) ?? "";
    }
    if (this.current === c.maxTabs && Math.max(stable.want, this.panic ? burst.want : 0) > c.maxTabs) reason += ` (capped at maxTabs ${c.maxTabs})`;
    return { target: this.current, panic: this.panic, reason, changed: this.current !== previous };
  }

  /** Checks the sample, records it and forgets what no window needs any more. */
  private accept(sample: LoadSample): void {
    const last = this.history.at(-1);
    if (!Number.isFinite(sample.now)) throw new RangeError(`sample time must be finite, got ${sample.now}`);
    if (last !== undefined && sample.now < last.now) throw new RangeError(`sample at ${sample.now} goes back in time (last at ${last.now})`);
    for (const key of ["arrivals", "queued", "poolSize"] as const) {
      if (!(sample[key] >= 0 && Number.isFinite(sample[key]))) throw new RangeError(`sample ${key} must be a finite number >= 0, got ${sample[key]}`);
    }
    this.firstAt ??= sample.now;
    this.history.push({ now: sample.now, arrivals: sample.arrivals, want: 0, recommended: 0 });
    const c = this.config;
    const keepMs = Math.max(c.stableWindowMs, c.scaleUpDelayMs, c.scaleDownDelayMs);
    let drop = 0;
    while ((this.history[drop] as Observed).now <= sample.now - keepMs) drop++;
    if (drop > 0) this.history.splice(0, drop);
  }

  /** Arrival rate over the trailing window plus the backlog, and the tabs it wants. */
  private demand(now: number, windowMs: number, backlog: number, usable: number): Demand {
    let arrivals = 0;
    for (const h of this.history) if (h.now > now - windowMs) arrivals += h.arrivals;
    const spanMs = Math.min(windowMs, now - (this.firstAt ?? now) + FIRST_INTERVAL_MS);
    const rps = arrivals / (spanMs / 1000) + backlog;
    return { rps, spanMs, want: rps > 0 ? Math.max(1, Math.ceil(rps / usable)) : 0 };
  }

  /** Ray's upscale delay: grow only once the higher recommendation held for the whole delay, to its lowest value. */
  private scaleUp(now: number, want: number): string | undefined {
    if (want <= this.current) {
      this.aboveSince = undefined;
      return undefined;
    }
    this.aboveSince ??= now;
    const delay = this.config.scaleUpDelayMs;
    if (now - this.aboveSince < delay) return `; up if it holds ${fmt((this.aboveSince + delay - now) / 1000)} s more`;
    let lowest = want;
    for (const h of this.history) if (h.now >= now - delay) lowest = Math.min(lowest, h.want);
    this.current = this.clamp(Math.max(this.current, lowest));
    return `; held ${fmt(delay / 1000)} s: up to ${this.current}`;
  }

  /** Knative's scale-down delay: shrink only to the highest recommendation of the trailing window. */
  private scaleDown(now: number, recommended: number): string | undefined {
    const delay = this.config.scaleDownDelayMs;
    let highest = recommended;
    for (const h of this.history) if (h.now > now - delay) highest = Math.max(highest, h.recommended);
    const to = this.clamp(highest);
    if (to >= this.current) return undefined;
    this.current = to;
    return `; highest over the last ${fmt(delay / 1000)} s is ${highest}: down to ${to}`;
  }

  private clamp(tabs: number): number {
    return Math.min(this.config.maxTabs, Math.max(this.config.minTabs, tabs));
  }
}

function validate(c: AutoscalerConfig): void {
  const fail = (field: keyof AutoscalerConfig, problem: string): never => {
    throw new AutoscalerConfigError(field, `${problem}, got ${c[field]}`);
  };
  if (!(Number.isInteger(c.minTabs) && c.minTabs >= 0)) fail("minTabs", "must be an integer >= 0");
  if (!(Number.isInteger(c.maxTabs) && c.maxTabs >= c.minTabs)) fail("maxTabs", `must be an integer >= minTabs (${c.minTabs})`);
  if (!(c.targetUtilization > 0 && c.targetUtilization <= 1)) fail("targetUtilization", "must be in (0, 1]");
  for (const field of ["stableWindowMs", "panicWindowMs", "defaultCapacityRps", "backlogDrainMs"] as const) {
    if (!(c[field] > 0 && Number.isFinite(c[field]))) fail(field, "must be a finite number > 0");
  }
  if (!(c.panicWindowMs <= c.stableWindowMs)) fail("panicWindowMs", `must not exceed stableWindowMs (${c.stableWindowMs})`);
  if (!(c.panicThreshold > 1 && Number.isFinite(c.panicThreshold))) fail("panicThreshold", "must be a finite number > 1");
  for (const field of ["scaleUpDelayMs", "scaleDownDelayMs"] as const) {
    if (!(c[field] >= 0 && Number.isFinite(c[field]))) fail(field, "must be a finite number >= 0");
  }
}

function describe(d: Demand, queued: number): string {
  return `${fmt(d.rps)} req/s${queued > 0 ? ` (with ${queued} queued)` : ""} over ${fmt(d.spanMs / 1000)} s`;
}

function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
