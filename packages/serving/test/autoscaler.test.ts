import { describe, expect, it } from "vitest";
import { Autoscaler, AutoscalerConfigError, DEFAULT_AUTOSCALER_CONFIG, type AutoscalerConfig, type ScaleDecision } from "../src/autoscaler.ts";

const SECOND = 1000;

type Step = ScaleDecision & { now: number; rps: number; queued: number };

type DriveOptions = {
  seconds: number;
  config?: Partial<AutoscalerConfig>;
  /** What a tab really serves per second (the simulated queue drains at pool × this). */
  trueCapacityRps?: number;
  /** What the server reports as measured capacity (undefined: nothing measured yet). */
  measuredCapacityRps?: number;
  /** Simulate a queue; without it `queued` is always 0 and demand is arrivals alone. */
  queue?: boolean;
};

/**
 * Feeds the autoscaler one sample a second from `rps(second)`. The server is taken to act at once:
 * the pool in each sample is the previous decision's target. With `queue`, requests the pool cannot
 * serve within the second wait for the next.
 */
function drive(rps: (second: number) => number, options: DriveOptions): { steps: Step[]; autoscaler: Autoscaler } {
  const autoscaler = new Autoscaler(options.config);
  const capacity = options.trueCapacityRps ?? 50;
  const steps: Step[] = [];
  let queued = 0;
  for (let second = 0; second < options.seconds; second++) {
    const now = second * SECOND;
    const arrivals = Math.round(rps(second));
    const poolSize = autoscaler.target;
    if (options.queue === true) queued = Math.max(0, queued + arrivals - poolSize * capacity);
    const decision = autoscaler.observe({ now, arrivals, queued, poolSize, capacityRps: options.measuredCapacityRps });
    steps.push({ ...decision, now, rps: arrivals, queued });
  }
  return { steps, autoscaler };
}

const targets = (steps: readonly Step[]): number[] => steps.map((s) => s.target);
const changes = (steps: readonly Step[]): Step[] => steps.filter((s) => s.changed);
const at = (steps: readonly Step[], second: number): Step => steps[second] as Step;

/** Every decrease comes at least the scale-down delay after the last increase: the pool never flaps faster. */
function expectNoFastFlap(steps: readonly Step[], delayMs = DEFAULT_AUTOSCALER_CONFIG.scaleDownDelayMs): void {
  let lastUp = -Infinity;
  for (let i = 1; i < steps.length; i++) {
    const step = steps[i] as Step;
    const before = (steps[i - 1] as Step).target;
    if (step.target > before) lastUp = step.now;
    if (step.target < before) expect(step.now - lastUp, `decrease at ${step.now} ms`).toBeGreaterThanOrEqual(delayMs);
  }
}

describe("Autoscaler", () => {
  it("constant load: settles at ceil(rate / (capacity × utilization)) and never flaps", () => {
    // 80 req/s at 70% of 50 req/s per tab (35) wants 3. The first second finds no tab: its 80
    // requests queue and count twice (arrived and waiting), a burst that wants 4 and panics.
    const { steps } = drive(() => 80, { seconds: 600, queue: true });
    expect(at(steps, 0)).toMatchObject({ target: 4, panic: true });
    const settled = steps.findIndex((s) => s.target === 3);
    expect(settled).toBeGreaterThan(60);
    expect(settled).toBeLessThanOrEqual(90);
    expect(targets(steps.slice(settled)).every((t) => t === 3)).toBe(true);
    expect(changes(steps).length).toBe(2);
    expect(steps.slice(settled).some((s) => s.panic || s.queued > 0)).toBe(false);
    expect(at(steps, 599).reason).toMatch(/^stable: 80 req\/s over 60 s at 70% of 50 req\/s per tab wants 3/);
  });

  it("a step from 5 to 200 req/s panics and reaches ceil(200 / 35) = 6 within a few seconds, capped by maxTabs", () => {
    const rps = (s: number): number => (s < 30 ? 5 : 200);
    const { steps } = drive(rps, { seconds: 90, queue: true, config: { maxTabs: 8 } });
    expect(at(steps, 29)).toMatchObject({ target: 1, panic: false });
    expect(at(steps, 30).panic).toBe(true);
    const reached = steps.findIndex((s) => s.target === 6);
    expect(reached).toBeGreaterThanOrEqual(30);
    expect(reached).toBeLessThanOrEqual(35);
    expect(targets(steps.slice(reached)).every((t) => t === 6)).toBe(true);

    const capped = drive(rps, { seconds: 90, queue: true }).steps;
    expect(Math.max(...targets(capped))).toBe(DEFAULT_AUTOSCALER_CONFIG.maxTabs);
    expect(at(capped, 34).target).toBe(4);
    expect(at(capped, 34).reason).toContain("capped at maxTabs 4");
  });

  it("a ramp from 5 to 200 req/s over 60 s grows monotonically and never shrinks during the ramp", () => {
    const { steps } = drive((s) => (s < 60 ? 5 + (195 * s) / 60 : 200), { seconds: 120, queue: true, config: { maxTabs: 8 } });
    const ts = targets(steps);
    for (let i = 1; i < ts.length; i++) expect(ts[i], `second ${i}`).toBeGreaterThanOrEqual(ts[i - 1] as number);
    expect(at(steps, 30).target).toBeGreaterThan(at(steps, 5).target);
    expect(at(steps, 119).target).toBe(6);
  });

  it("a short spike: panic up at once, no scale-down until panic ends and the scale-down delay passes", () => {
    const { steps } = drive((s) => (s >= 20 && s < 25 ? 300 : 10), { seconds: 240, config: { maxTabs: 8 } });
    expect(at(steps, 19)).toMatchObject({ target: 1, panic: false });
    expect(at(steps, 20).panic).toBe(true);
    expect(at(steps, 20).target).toBeGreaterThan(1);
    expect(at(steps, 20).reason).toMatch(/^panic: /);
    const lastPanic = steps.findLastIndex((s) => s.panic);
    // The panic lasts a whole stable window after its condition last held (during the spike).
    expect(lastPanic).toBeGreaterThanOrEqual(20 + 60);
    const peak = Math.max(...targets(steps));
    const peakAt = steps.findIndex((s) => s.target === peak);
    expect(peakAt).toBeLessThanOrEqual(25);
    expect(targets(steps.slice(peakAt, lastPanic + 30)).every((t) => t === peak)).toBe(true);
    const firstDown = steps.findIndex((s, i) => i > peakAt && s.target < peak);
    expect(firstDown).toBe(lastPanic + 30);
    expect(at(steps, 239).target).toBe(1);
    expectNoFastFlap(steps);
  });

  it("load dropping to zero: back to minTabs only after the panic ends and the scale-down delay passes", () => {
    for (const minTabs of [0, 1]) {
      const { steps, autoscaler } = drive((s) => (s < 20 ? 200 : 0), { seconds: 200, config: { minTabs, maxTabs: 8 } });
      expect(at(steps, 0).panic).toBe(true);
      const lastPanic = steps.findLastIndex((s) => s.panic);
      const firstAtMin = steps.findIndex((s) => s.target === minTabs);
      expect(at(steps, lastPanic).target).toBe(6);
      expect(firstAtMin).toBeGreaterThanOrEqual(lastPanic + 30);
      expect(targets(steps.slice(firstAtMin)).every((t) => t === minTabs)).toBe(true);
      expect(autoscaler.target).toBe(minTabs);
      expect(autoscaler.panicking).toBe(false);
    }
  });

  it("flapping load (10 s high, 10 s low): the target changes a bounded number of times", () => {
    const mild = drive((s) => (Math.floor(s / 10) % 2 === 0 ? 100 : 20), { seconds: 600, queue: true }).steps;
    expect(changes(mild).length).toBeLessThanOrEqual(3);
    expect(at(mild, 599).target).toBe(2); // the 60 req/s mean wants 2 of 35.
    // A harsh swing (200/5) panics on each burst after a scale-down, yet changes at most every ~90 s.
    const harsh = drive((s) => (Math.floor(s / 10) % 2 === 0 ? 200 : 5), { seconds: 600, queue: true, config: { maxTabs: 8 } }).steps;
    expect(changes(harsh).length).toBeLessThanOrEqual(14);
    expectNoFastFlap(harsh);
    expectNoFastFlap(mild);
  });

  it("outside panic, grows only once a higher stable recommendation held for scaleUpDelayMs, to its lowest", () => {
    const autoscaler = new Autoscaler({ panicThreshold: 10, maxTabs: 8 });
    let now = 0;
    const tick = (queued: number): ScaleDecision =>
      autoscaler.observe({ now: (now += SECOND), arrivals: 50, queued, poolSize: autoscaler.target, capacityRps: undefined });
    for (let i = 0; i < 60; i++) tick(0);
    expect(autoscaler.target).toBe(2); // 50 req/s of 35 per tab.
    // One second of backlog (60 queued: +30 req/s, wants 3) passes without growing the pool.
    expect(tick(60).target).toBe(2);
    expect(tick(0).target).toBe(2);
    // Wants 3, then 5, then 4: after 2 s it grows to the lowest of them, 3.
    expect(tick(60)).toMatchObject({ target: 2, changed: false });
    expect(tick(200).reason).toMatch(/up if it holds 1 s more$/);
    expect(tick(130)).toMatchObject({ target: 3, changed: true, panic: false });
  });

  it("cold start: the first request with an empty pool gets a tab in the same observation", () => {
    const autoscaler = new Autoscaler();
    expect(autoscaler.observe({ now: 0, arrivals: 0, queued: 0, poolSize: 0, capacityRps: undefined })).toMatchObject({ target: 0, changed: false });
    const decision = autoscaler.observe({ now: 1000, arrivals: 1, queued: 1, poolSize: 0, capacityRps: undefined });
    expect(decision).toMatchObject({ target: 1, changed: true, panic: false });
    expect(decision.reason).toMatch(/^cold start/);
    // The request counts in its stable window's 60 samples (to 60 s), whose last recommendation of 1
    // holds for the scale-down delay; only then is the pool empty, and a new request refills it at once.
    let now = 1000;
    while (autoscaler.target > 0 && now < 200_000) autoscaler.observe({ now: (now += 1000), arrivals: 0, queued: 0, poolSize: 1, capacityRps: 40 });
    expect(now).toBe(60_000 + 30_000);
    expect(autoscaler.target).toBe(0);
    expect(autoscaler.observe({ now: now + 1, arrivals: 1, queued: 0, poolSize: 0, capacityRps: 40 }).target).toBe(1);
  });

  it("clamps to [minTabs, maxTabs]", () => {
    const idle = drive(() => 0, { seconds: 30, config: { minTabs: 2 } }).steps;
    expect(targets(idle).every((t) => t === 2)).toBe(true);
    const busy = drive(() => 1000, { seconds: 60, queue: true, config: { minTabs: 1, maxTabs: 3 } }).steps;
    expect(Math.max(...targets(busy))).toBe(3);
    expect(at(busy, 59).target).toBe(3);
    expect(targets(busy).every((t) => t >= 1)).toBe(true);
  });

  it("measured capacity changes the size", () => {
    // 100 req/s: 35 per tab (the default 50) wants 3; a measured 20 (14 usable) wants 8; 200 (140) wants 1.
    const bySize = (measuredCapacityRps: number | undefined): number =>
      at(drive(() => 100, { seconds: 120, config: { maxTabs: 16 }, ...(measuredCapacityRps === undefined ? {} : { measuredCapacityRps }) }).steps, 119).target;
    expect(bySize(undefined)).toBe(3);
    expect(bySize(20)).toBe(8);
    expect(bySize(200)).toBe(1);
  });

  it("queued requests add to the demand, drained within backlogDrainMs", () => {
    const autoscaler = new Autoscaler({ scaleUpDelayMs: 0, maxTabs: 16 });
    autoscaler.observe({ now: 0, arrivals: 0, queued: 0, poolSize: 0, capacityRps: 50 });
    // 0 arrivals, 140 queued to drain in 2 s: 70 req/s, 2 tabs of 35.
    expect(autoscaler.observe({ now: 1000, arrivals: 0, queued: 140, poolSize: 1, capacityRps: 50 }).target).toBe(2);
  });

  it("validates the config, naming the field", () => {
    const bad: [Partial<AutoscalerConfig>, keyof AutoscalerConfig][] = [
      [{ minTabs: -1 }, "minTabs"],
      [{ minTabs: 1.5 }, "minTabs"],
      [{ minTabs: 5, maxTabs: 4 }, "maxTabs"],
      [{ targetUtilization: 0 }, "targetUtilization"],
      [{ targetUtilization: 1.2 }, "targetUtilization"],
      [{ stableWindowMs: 0 }, "stableWindowMs"],
      [{ panicWindowMs: Number.NaN }, "panicWindowMs"],
      [{ panicWindowMs: 70_000 }, "panicWindowMs"],
      [{ panicThreshold: 1 }, "panicThreshold"],
      [{ scaleUpDelayMs: -1 }, "scaleUpDelayMs"],
      [{ scaleDownDelayMs: -5 }, "scaleDownDelayMs"],
      [{ defaultCapacityRps: 0 }, "defaultCapacityRps"],
      [{ backlogDrainMs: 0 }, "backlogDrainMs"],
    ];
    for (const [config, field] of bad) {
      let caught: unknown;
      try {
        new Autoscaler(config);
      } catch (error) {
        caught = error;
      }
      expect(caught, field).toBeInstanceOf(AutoscalerConfigError);
      expect((caught as AutoscalerConfigError).field).toBe(field);
      expect((caught as Error).message).toContain(field);
    }
    expect(() => new Autoscaler({ targetUtilization: 1, scaleUpDelayMs: 0, scaleDownDelayMs: 0, panicWindowMs: 60_000 })).not.toThrow();
  });

  it("a sample going back in time throws RangeError; equal times are accepted", () => {
    const autoscaler = new Autoscaler();
    autoscaler.observe({ now: 5000, arrivals: 1, queued: 0, poolSize: 0, capacityRps: undefined });
    expect(() => autoscaler.observe({ now: 5000, arrivals: 1, queued: 0, poolSize: 1, capacityRps: undefined })).not.toThrow();
    expect(() => autoscaler.observe({ now: 4999, arrivals: 1, queued: 0, poolSize: 1, capacityRps: undefined })).toThrow(RangeError);
    expect(() => autoscaler.observe({ now: 6000, arrivals: -1, queued: 0, poolSize: 1, capacityRps: undefined })).toThrow(RangeError);
  });

  it("keeps memory bounded to the longest window", () => {
    const { autoscaler } = drive(() => 10, { seconds: 3600 });
    const history = (autoscaler as unknown as { history: unknown[] }).history;
    expect(history.length).toBeLessThanOrEqual(DEFAULT_AUTOSCALER_CONFIG.stableWindowMs / SECOND + 1);
  });
});
