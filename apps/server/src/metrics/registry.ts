import { collectDefaultMetrics, Registry } from "prom-client";

/** Every metric this server exposes starts with this, so they sort together next to other jobs'. */
export const METRIC_PREFIX = "crowdtrain_";

/**
 * prom-client's default gauges named `_total`, a suffix Prometheus reserves for counters (promtool's
 * lint fails them). Each is the sum of a by-type gauge the defaults also export (e.g.
 * `nodejs_active_handles{type}`), so dropping them loses nothing: `sum()` over those gives it.
 */
const MISNAMED_DEFAULTS = ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"];

/**
 * One registry per training service, never prom-client's global one: a test process starts many
 * servers, and a second metric of the same name in one registry throws. The process metrics
 * (CPU, memory, event-loop lag, GC) go on the same registry, so one scrape has everything.
 */
export function createRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const name of MISNAMED_DEFAULTS) if (registry.getSingleMetric(name) !== undefined) registry.removeSingleMetric(name);
  return registry;
}
