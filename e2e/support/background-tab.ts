// A tab that Chromium really treats as a background tab: hidden, its timers throttled, as when a
// volunteer switches to another tab.
//
// Pages of Playwright's own browser cannot be: Playwright turns on focus emulation for every page,
// and Chromium keeps such a page visible whatever covers it (measured with Chromium 156: behind a
// newer tab of its window, or with the window minimized, `document.visibilityState` stays
// "visible" and a 100 ms interval keeps ticking 10 times a second). So the test starts a Chromium of
// its own and attaches over CDP with `noDefaults`, which leaves the default context's pages alone;
// opening a tab in front of one then hides it, and it is throttled like any background tab.
// tests/robust.spec.ts trains with one honest tab in the background this way.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium, type Browser, type BrowserContext, type Page } from "@playwright/test";
import type {} from "../../apps/worker/src/worker-api.ts";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "./chromium-args.ts";

/** Chromium prints its DevTools address this soon after it starts, or the launch fails. */
const DEVTOOLS_READY_TIMEOUT_MS = 30_000;
/** A tab in front of the page hides it this soon, or sendToBackground fails. */
const HIDE_TIMEOUT_MS = 10_000;
/** Closing: the browser process gets this long to exit after SIGTERM before SIGKILL. */
const EXIT_TIMEOUT_MS = 5_000;
/**
 * Chromium's intensive wake-up throttling (timers of a hidden page wake at most once a minute)
 * normally starts after 5 minutes hidden; this browser starts it after 10 s, so a test of a few
 * minutes meets it. (A page with an open RTCDataChannel is exempt, as a training tab has.)
 */
export const INTENSIVE_THROTTLING_GRACE_S = 10;

/** A headless Chromium of the test's own, attached over CDP without Playwright's page defaults. */
export class UnmanagedChromium {
  private constructor(
    readonly browser: Browser,
    /** The default context: the one whose pages Playwright leaves alone. */
    readonly context: BrowserContext,
    private readonly child: ChildProcess,
    private readonly profileDir: string,
  ) {}

  static async launch(): Promise<UnmanagedChromium> {
    const profileDir = mkdtempSync(join(tmpdir(), "crowdtrain-chromium-"));
    const args = [
      ...CHROMIUM_ARGS,
      "--headless",
      "--remote-debugging-port=0",
      `--user-data-dir=${profileDir}`,
      `--enable-features=IntensiveWakeUpThrottling:grace_period_seconds/${INTENSIVE_THROTTLING_GRACE_S}`,
      // Besides throttling timers, Chromium "backgrounds" a hidden tab's renderer (a lower scheduling
      // priority). On this machine's two cores, saturated by the other tabs, SwiftShader and the
      // server's audits, hidden tabs sat for 30 s to minutes with messages unhandled (an audit
      // unanswered, a round timed out naming the tab) in full e2e runs. Turning backgrounding off
      // did not cure that (and the renderer's nice value read 0 before and after hiding either way);
      // it stays off so the test is of the tab's code under timer throttling alone.
      "--disable-renderer-backgrounding",
      "about:blank",
    ];
    // Its own process group, so closing stops its helper processes too (they write to the profile).
    const child = spawn(CHROMIUM_PATH ?? chromium.executablePath(), args, { stdio: ["ignore", "ignore", "pipe"], detached: true });
    try {
      const endpoint = await devtoolsEndpoint(child);
      const browser = await chromium.connectOverCDP(endpoint, { noDefaults: true });
      const context = browser.contexts()[0];
      if (context === undefined) throw new Error("the attached Chromium has no default context");
      return new UnmanagedChromium(browser, context, child, profileDir);
    } catch (error) {
      await stop(child);
      removeProfile(profileDir);
      throw error;
    }
  }

  /** The window's first tab (Chromium opened it at about:blank). */
  async firstPage(): Promise<Page> {
    return this.context.pages()[0] ?? (await this.context.newPage());
  }

  async close(): Promise<void> {
    await this.browser.close().catch((error: unknown) => console.error(`closing the CDP connection: ${String(error)}`));
    await stop(this.child);
    removeProfile(this.profileDir);
  }
}

/**
 * Opens a blank tab in front of `page` (in its window, as a volunteer opening another site does)
 * and waits until `page` reports itself hidden. Returns the new tab; `page.bringToFront()` undoes it.
 */
export async function sendToBackground(page: Page): Promise<Page> {
  const opened = page.context().waitForEvent("page", { timeout: HIDE_TIMEOUT_MS });
  await page.evaluate(() => void window.open("about:blank", "_blank"));
  const front = await opened;
  await page.waitForFunction(() => document.visibilityState === "hidden", undefined, { timeout: HIDE_TIMEOUT_MS });
  return front;
}

/** How often a 50 ms interval actually ran on `page` over `windowMs`, per second: 20 in a visible tab. */
export async function timerWakeupsPerSecond(page: Page, windowMs: number): Promise<number> {
  const ticks = await page.evaluate(
    (ms) =>
      new Promise<number>((resolve) => {
        let count = 0;
        const interval = setInterval(() => count++, 50);
        // A plain wait outside the page would do too; a page timer is throttled like the interval, so
        // the window is measured with the page's own clock.
        const started = performance.now();
        const check = (): void => {
          if (performance.now() - started < ms) return void setTimeout(check, 50);
          clearInterval(interval);
          resolve(count / ((performance.now() - started) / 1000));
        };
        check();
      }),
    windowMs,
  );
  return ticks;
}

/** What `watchBackground` saw at each slice: the page's visibility and the rounds it had committed. */
/** `trace`: the session's latest entries ("<ms> what"), with `now` on the same clock, when the tab made no progress. */
export type BackgroundSample = { visibility: string; roundsDone: number; phase?: string; task?: string; now?: number; trace?: string[] };

/**
 * Samples `page` every `sliceMs` (its visibility, and `window.crowdtrainWorker`'s committed rounds, phase and task in flight)
 * beside whatever the test does meanwhile, until `stop()`, which returns the samples (`count()`: how
 * many so far; a sample lands when the page answers, late in a throttled tab). A failed read is
 * recorded as the visibility "unreadable: <error>".
 */
export function watchBackground(page: Page, sliceMs: number): { count(): number; stop(): BackgroundSample[] } {
  const samples: BackgroundSample[] = [];
  const read = (): void => {
    page
      .evaluate(() => {
        const status = window.crowdtrainWorker?.status();
        // The phase and the task in flight say what a tab that commits nothing is stuck on.
        const task = status?.task === undefined ? undefined : `${status.task.kind} for ${Math.round(performance.now() - status.task.since)} ms`;
        return { visibility: document.visibilityState as string, roundsDone: status?.roundsDone ?? 0, phase: status?.phase, task, now: Math.round(performance.now()), trace: status?.trace };
      })
      .then(
      (sample) => {
        // What a tab that committed nothing since the last look heard and did is the one trace worth keeping.
        const stalled = samples.length > 0 && samples.at(-1)?.roundsDone === sample.roundsDone;
        samples.push(stalled ? sample : { ...sample, trace: undefined });
      },
      (error: unknown) => samples.push({ visibility: `unreadable: ${String(error)}`, roundsDone: -1 }),
    );
  };
  read();
  const timer = setInterval(read, sliceMs);
  return {
    count: () => samples.length,
    stop() {
      clearInterval(timer);
      return [...samples];
    },
  };
}

async function devtoolsEndpoint(child: ChildProcess): Promise<string> {
  if (child.stderr === null) throw new Error("no stderr to read Chromium's DevTools address from");
  const lines = createInterface({ input: child.stderr });
  const seen: string[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    return await new Promise<string>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`Chromium printed no DevTools address within ${DEVTOOLS_READY_TIMEOUT_MS} ms:\n${seen.join("\n")}`)), DEVTOOLS_READY_TIMEOUT_MS);
      lines.on("line", (line) => {
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(line);
        if (match?.[1] !== undefined) resolve(match[1]);
        else if (seen.length < 50) seen.push(line);
      });
      child.once("exit", (code, signal) => reject(new Error(`Chromium exited (${signal ?? code}) before it listened:\n${seen.join("\n")}`)));
      child.once("error", reject);
    });
  } finally {
    clearTimeout(timer);
    // Keep draining stderr (a full pipe would block the browser), without keeping the lines.
    lines.removeAllListeners("line");
    lines.on("line", () => undefined);
  }
}

/** Stops the browser's whole process group: SIGTERM, then SIGKILL after EXIT_TIMEOUT_MS. */
async function stop(child: ChildProcess): Promise<void> {
  const group = (signal: NodeJS.Signals): void => {
    if (child.pid === undefined) return;
    try {
      process.kill(-child.pid, signal);
    } catch (error) {
      // ESRCH: the group is gone already, which is what we want.
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
    }
  };
  const running = child.exitCode === null && child.signalCode === null;
  const exited = running ? new Promise<void>((resolve) => child.once("exit", () => resolve())) : Promise.resolve();
  group("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), EXIT_TIMEOUT_MS)));
  if ((await Promise.race([exited, late])) === "late") {
    group("SIGKILL");
    await exited;
  }
  clearTimeout(timer);
  // Helpers that outlived the browser (crashpad, utility processes) go too.
  group("SIGKILL");
}

/** A helper may still be finishing a write as the group dies: retry the removal briefly. */
function removeProfile(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
}
