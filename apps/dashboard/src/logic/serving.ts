// The serving pool's windows shaped into chart series. Pure.
import type { ScaleDecision, ServingWindow } from "@crowdtrain/protocol";

type Points = [number, number][];

/** Every line the serving panel draws, each point [seconds of server clock, value]. */
export type ServingSeries = {
  poolSize: Points;
  offeredRps: Points;
  servedRps: Points;
  p50Ms: Points;
  p95Ms: Points;
  p99Ms: Points;
  queueDepth: Points;
  errors: Points;
};

/**
 * One point per window (oldest first, as the server sends them) at the window's end. x is in seconds,
 * not ms, so the charts' round ticks land on whole seconds. A window without answered requests has no
 * percentiles: NaN, which breaks the latency lines there instead of drawing a false zero.
 */
export function servingSeries(windows: readonly ServingWindow[]): ServingSeries {
  const line = (value: (w: ServingWindow) => number | undefined): Points => windows.map((w) => [w.at / 1_000, value(w) ?? Number.NaN]);
  return {
    poolSize: line((w) => w.poolSize),
    offeredRps: line((w) => w.offeredRps),
    servedRps: line((w) => w.servedRps),
    p50Ms: line((w) => w.p50Ms),
    p95Ms: line((w) => w.p95Ms),
    p99Ms: line((w) => w.p99Ms),
    queueDepth: line((w) => w.queueDepth),
    errors: line((w) => w.errors),
  };
}

/** The latest window in which a request was answered: the latency the panel quotes (the last window may have none). */
export function lastAnsweredWindow(windows: readonly ServingWindow[]): ServingWindow | undefined {
  return windows.findLast((w) => w.p50Ms !== undefined);
}

/** The last `count` scale decisions, newest first (the server sends them oldest first). */
export function latestDecisions(decisions: readonly ScaleDecision[], count: number): ScaleDecision[] {
  return decisions.slice(-count).reverse();
}
