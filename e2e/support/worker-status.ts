import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/worker-api.ts";

/** How long one page may take to answer for the failure report (a crashed or hung page never does). */
const STATUS_TIMEOUT_MS = 2_000;

/**
 * One line per worker page: its identity, phase and why it stopped or last failed. Attached when a
 * test fails, so a tab that dropped out mid-run says why instead of leaving only its absence.
 */
export async function describeWorkers(pages: readonly { label: string; page: Page }[]): Promise<string> {
  const lines = await Promise.all(pages.map(async ({ label, page }) => `${label}: ${await describeOne(page)}`));
  return lines.join("\n");
}

async function describeOne(page: Page): Promise<string> {
  if (page.isClosed()) return "closed";
  const read = page.evaluate(() => {
    const status = window.crowdtrainWorker?.status();
    if (status === undefined) return "no worker session on this page";
    const { peerId, phase, backend, round, roundsDone, task, stopReason, lastError, trace } = status;
    const running = task === undefined ? undefined : `${task.kind} for ${Math.round(performance.now() - task.since)} ms`;
    return JSON.stringify({ peerId, phase, backend, round, roundsDone, task: running, stopReason, lastError: lastError?.slice(0, 160), now: Math.round(performance.now()), trace });
  });
  const timeout = new Promise<string>((done) => setTimeout(() => done(`no answer within ${STATUS_TIMEOUT_MS} ms`), STATUS_TIMEOUT_MS));
  return Promise.race([read.catch((error: unknown) => `unreadable: ${error instanceof Error ? error.message : String(error)}`), timeout]);
}
