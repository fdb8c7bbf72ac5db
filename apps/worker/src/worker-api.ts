// What the worker page exposes to e2e tests on `window.crowdtrainWorker` (types only).
import type { SessionStatus } from "./session/status.ts";

export type WorkerPageStatus = SessionStatus & { where: string };

export interface CrowdtrainWorkerPage {
  /** The running volunteer's status; present once Start succeeded. */
  status(): WorkerPageStatus;
}

declare global {
  interface Window {
    crowdtrainWorker?: CrowdtrainWorkerPage;
  }
}
