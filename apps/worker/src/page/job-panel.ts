// The volunteer page's job panel: the job, its progress, its loss curve and this tab's part in it,
// from GET /api/summary (a payload that does not grow with the swarm), polled while the page is open.
import { parseSummary, type Summary } from "@crowdtrain/protocol";
import { describeContribution, describeJob, describeProgress, sparklinePoints } from "./job-facts.ts";

/** How often the panel asks; a hidden tab's throttled timers only make it slower, never the training. */
const SUMMARY_POLL_MS = 5_000;
const SUMMARY_TIMEOUT_MS = 5_000;
/** The sparkline's viewBox. */
const SPARK_WIDTH = 160;
const SPARK_HEIGHT = 32;

export type Mine = { peerId: string | undefined; roundsDone: number; samplesCommitted: number };

const byId = <T extends Element>(id: string): T => {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`worker page markup is missing #${id}`);
  return element as unknown as T;
};

/**
 * Starts polling; stop() ends it (the page owns the panel for its lifetime). showContribution()
 * redraws this tab's part at once (on every status change), against the last total the server gave.
 */
export function startJobPanel(mine: () => Mine): { stop(): void; showContribution(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let samplesSeen: number | undefined;
  const showContribution = (): void => {
    const text = describeContribution(mine(), samplesSeen);
    const row = byId("contribution");
    if (row.textContent !== text) row.textContent = text;
  };
  const poll = async (): Promise<void> => {
    const me = mine();
    try {
      const response = await fetch(`/api/summary${me.peerId === undefined ? "" : `?peer=${encodeURIComponent(me.peerId)}`}`, { signal: AbortSignal.timeout(SUMMARY_TIMEOUT_MS) });
      if (!response.ok) throw new Error(`GET /api/summary answered ${response.status}`);
      const summary = parseSummary(await response.json());
      samplesSeen = summary.samplesSeen;
      render(summary);
      showContribution();
      byId("job-error").textContent = "";
    } catch (error) {
      // Shown, not fatal: the server may be restarting; the next poll tries again.
      byId("job-error").textContent = `Job progress unavailable: ${error instanceof Error ? error.message : String(error)}`;
    }
    if (!stopped) timer = setTimeout(() => void poll(), SUMMARY_POLL_MS);
  };
  void poll();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    showContribution,
  };
}

function render(summary: Summary): void {
  byId("job-name").textContent = `Job: ${summary.job.name}`;
  byId("job-what").textContent = `${describeJob(summary.job)}; ${summary.members} ${summary.members === 1 ? "tab" : "tabs"} training now.`;
  const progress = describeProgress(summary);
  const bar = byId<HTMLProgressElement>("job-progress");
  // No value attribute: an indeterminate bar, for a job without an end to measure.
  if (progress.fraction === undefined) bar.removeAttribute("value");
  else bar.value = progress.fraction;
  byId("job-progress-text").textContent = progress.text;
  byId<SVGPolylineElement>("loss-line").setAttribute("points", sparklinePoints(summary.loss.map(([, loss]) => loss), SPARK_WIDTH, SPARK_HEIGHT));
  const last = summary.loss.at(-1);
  const accuracy = summary.accuracy.at(-1);
  byId("job-curve-text").textContent =
    (last === undefined ? "no rounds yet" : `loss ${last[1].toFixed(3)} at round ${last[0]}`) + (accuracy === undefined ? "" : `; test accuracy ${(accuracy[1] * 100).toFixed(1)}% at round ${accuracy[0]}`);
}
