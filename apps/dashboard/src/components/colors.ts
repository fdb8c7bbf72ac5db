import type { Backend } from "@crowdtrain/protocol";
import type { Phase } from "../logic/timeline.ts";

export const BACKEND_COLORS: Record<Backend, string> = { webgpu: "#7048e8", webgl: "#1c7ed6", wasm: "#0c8599", cpu: "#868e96" };
export const PHASE_COLORS: Record<Phase, string> = { compute: "#4c6ef5", allReduce: "#f59f00", update: "#12b886", other: "#ced4da" };
export const LOSS_COLOR = "#e8590c";
export const ACCURACY_COLOR = "#1c7ed6";
/** Serving charts: offered load is the demand, served what the pool kept up with. */
export const POOL_COLOR = "#7048e8";
export const OFFERED_COLOR = "#868e96";
export const SERVED_COLOR = "#12b886";
/** Latency percentiles darken towards the tail. */
export const LATENCY_COLORS = { p50: "#74c0fc", p95: "#1c7ed6", p99: "#1e3a8a" } as const;
export const QUEUE_COLOR = "#f59f00";
export const ERRORS_COLOR = "#d64545";
