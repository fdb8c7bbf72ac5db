import type { SessionStatus } from "./session/status.ts";

const PHASE_TEXT: Record<SessionStatus["phase"], string> = {
  starting: "Starting…",
  connecting: "Connecting to the server…",
  syncing: "Downloading the current model…",
  waiting: "Waiting for the next round…",
  training: "Training: computing and averaging gradients…",
  serving: "Serving: answering prediction requests with the latest model…",
  leaving: "Leaving: answering the spot check it may owe before it stops…",
  stopped: "Stopped.",
};

const text = (id: string, value: string): void => {
  const element = document.getElementById(id);
  // textContent, never innerHTML: reasons and errors may carry text from elsewhere.
  // Unchanged text is left alone: a write would still make the page lay out and paint again.
  if (element && element.textContent !== value) element.textContent = value;
};

/** Shows a (partial) status on the page. */
export function renderStatus(status: Partial<SessionStatus> & { where?: string; restarts?: number }): void {
  if (status.phase !== undefined) text("phase", PHASE_TEXT[status.phase] + (status.stopReason ? ` ${status.stopReason}` : ""));
  if (status.backend !== undefined) text("backend", status.where ? `${status.backend} (${status.where})` : status.backend);
  if (status.roundsDone !== undefined) text("rounds", String(status.roundsDone));
  if (status.samplesDone !== undefined) text("samples", String(status.samplesDone));
  if (status.samplesPerSecond !== undefined) text("speed", `${status.samplesPerSecond.toFixed(0)} samples/s`);
  if (status.share !== undefined) text("share", `${(status.share * 100).toFixed(0)}%`);
  const t = status.lastTimings;
  if (t !== undefined) {
    text("timings", `compute ${t.computeMs.toFixed(0)} ms, read-back ${t.readbackMs.toFixed(0)} ms, all-reduce ${t.allReduceMs.toFixed(0)} ms, update ${t.updateMs.toFixed(1)} ms`);
  }
  if (status.backendReasons !== undefined && status.backendReasons.length > 0) {
    document.getElementById("reasons")?.replaceChildren(...status.backendReasons.map((reason) => Object.assign(document.createElement("li"), { textContent: reason })));
  }
  if (status.lastError !== undefined) {
    const restarted = status.restarts !== undefined && status.restarts > 0 ? `started over with a fresh trainer (${status.restarts}) after: ` : "";
    text("error", restarted + status.lastError);
  }
}
