import { AsyncLocalStorage, createHook } from "node:async_hooks";

/**
 * Owns the timers that third-party code starts and gives no way to stop.
 *
 * Why: `peer` 1.0.2 starts two self-rescheduling setTimeout loops when ExpressPeerServer is mounted
 * (broken-connection check every 300 ms, message expiry every `cleanup_out_msgs`) and exposes no
 * stop(). Left alone they keep Node alive after close() and pile up when tests start many servers.
 * Code run through `scope.run()` (and every timer its timers schedule, since the async context follows
 * setTimeout callbacks) records its pending timers here, so `clearAll()` can cancel them.
 */
export interface TimerScope {
  run<T>(fn: () => T): T;
  /** Cancels every pending timer created inside the scope and stops tracking. */
  clearAll(): void;
}

interface Scope {
  open: boolean;
  pending: Map<number, NodeJS.Timeout>;
}

const current = new AsyncLocalStorage<Scope>();
/** asyncId of each tracked timer -> the scope that owns it, so `destroy` can forget fired timers. */
const ownerOf = new Map<number, Scope>();
let openScopes = 0;

// Enabled only while a scope is open: async hooks cost something on every async resource.
const hook = createHook({
  init(asyncId, type, _triggerAsyncId, resource) {
    if (type !== "Timeout") return;
    const scope = current.getStore();
    if (scope === undefined || !scope.open) return;
    scope.pending.set(asyncId, resource as NodeJS.Timeout);
    ownerOf.set(asyncId, scope);
  },
  destroy(asyncId) {
    ownerOf.get(asyncId)?.pending.delete(asyncId);
    ownerOf.delete(asyncId);
  },
});

export function createTimerScope(): TimerScope {
  const scope: Scope = { open: true, pending: new Map() };
  if (openScopes++ === 0) hook.enable();
  return {
    run: (fn) => current.run(scope, fn),
    clearAll() {
      if (!scope.open) return;
      scope.open = false;
      for (const [asyncId, timer] of scope.pending) {
        clearTimeout(timer);
        ownerOf.delete(asyncId);
      }
      scope.pending.clear();
      if (--openScopes === 0) hook.disable();
    },
  };
}
