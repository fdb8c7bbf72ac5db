/**
 * Time as a port, so the runner stays free of DOM and Node typings and tests can drive it.
 * `systemClock` reads the timers every JS host provides (browser, worker, Node) from globalThis.
 */
export type TimerHandle = { readonly __timer: unique symbol };

export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
}

type HostTimers = {
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  performance?: { now(): number };
};

export function systemClock(): Clock {
  const host = globalThis as unknown as HostTimers;
  const perf = host.performance;
  return {
    now: perf ? () => perf.now() : () => Date.now(),
    setTimeout: (callback, ms) => host.setTimeout(callback, ms) as TimerHandle,
    clearTimeout: (handle) => host.clearTimeout(handle),
  };
}
