// What the worker page exposes to e2e tests on `window.crowdtrainWorker` (types only).
import type { ServingAgentStatus } from "./serving/agent.ts";
import type { SessionStatus } from "./session/status.ts";

/**
 * `serving`: the serving agent's numbers while (or since) this tab served; `restarts`: how often
 * this tab started over with a fresh trainer after its own failed (volunteer.ts).
 */
export type WorkerPageStatus = SessionStatus & { where: string; restarts: number; serving?: ServingAgentStatus };

export interface CrowdtrainWorkerPage {
  /** The running volunteer's status; present once Start succeeded. */
  status(): WorkerPageStatus;
}

declare global {
  interface Window {
    crowdtrainWorker?: CrowdtrainWorkerPage;
  }
}
