import type { Backend } from "@crowdtrain/protocol";
import type { Phase } from "../logic/timeline.ts";

export const BACKEND_COLORS: Record<Backend, string> = { webgpu: "#7048e8", webgl: "#1c7ed6", wasm: "#0c8599", cpu: "#868e96" };
export const PHASE_COLORS: Record<Phase, string> = { compute: "#4c6ef5", allReduce: "#f59f00", update: "#12b886", other: "#ced4da" };
export const LOSS_COLOR = "#e8590c";
export const ACCURACY_COLOR = "#1c7ed6";
