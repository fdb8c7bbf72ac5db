import type { Page } from "@playwright/test";
import { expect, test } from "../fixtures.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { sendToBackground, timerWakeupsPerSecond, UnmanagedChromium, INTENSIVE_THROTTLING_GRACE_S } from "../support/background-tab.ts";
import { fetchStatus } from "../support/status.ts";

/** The bar: a volunteer who switches tabs for two minutes still trains. */
const HIDDEN_MS = 125_000;
/** Each slice of the hidden time must see the background tab commit at least one round. */
const SLICE_MS = 25_000;
/** Loading both pages, the dataset and the first rounds. */
const START_TIMEOUT_MS = 90_000;
/** A visible tab's 50 ms interval runs ~20 times a second; Chromium wakes a background tab's timers once a second. */
const MAX_BACKGROUND_WAKEUPS_PER_S = 3;

const committedRounds = (page: Page): Promise<number> => page.evaluate(() => window.crowdtrainWorker?.status().roundsDone ?? 0);
const peerIdOf = (page: Page): Promise<string | undefined> => page.evaluate(() => window.crowdtrainWorker?.status().peerId);

test("a background tab (hidden, its timers throttled by Chromium) keeps committing rounds for two minutes and is never dropped", async ({ launchServer, openWorkers, guard }) => {
  test.setTimeout(START_TIMEOUT_MS + HIDDEN_MS + 60_000);
  const server = await launchServer(["--job", "e2e/jobs/background.json", "--min-workers", "2"]);
  const chrome = await UnmanagedChromium.launch();
  try {
    await guard.install(chrome.context, 1);
    const background = await chrome.firstPage();
    await background.goto(`${server.url}/?backends=webgpu`);
    const [visible] = await openWorkers(1, "/?backends=cpu", server);
    for (const page of [background, visible!]) await page.click("#start");
    await expect.poll(() => committedRounds(background), { timeout: START_TIMEOUT_MS, intervals: [1_000] }).toBeGreaterThanOrEqual(3);
    const peerId = await peerIdOf(background);
    expect(peerId).toBeDefined();

    const front = await sendToBackground(background);
    // Really in the background, not just told so: Chromium throttles its timers.
    const wakeups = await timerWakeupsPerSecond(background, 3_000);
    expect(wakeups).toBeLessThanOrEqual(MAX_BACKGROUND_WAKEUPS_PER_S);
    const hiddenAt = Date.now();
    const progress = [await committedRounds(background)];
    while (Date.now() - hiddenAt < HIDDEN_MS) {
      await front.waitForTimeout(SLICE_MS);
      expect(await background.evaluate(() => document.visibilityState)).toBe("hidden");
      progress.push(await committedRounds(background));
    }
    console.log(`background tab: a 50 ms interval ran ${wakeups.toFixed(1)} times a second; rounds committed per ${SLICE_MS / 1000} s while hidden (intensive throttling from ${INTENSIVE_THROTTLING_GRACE_S} s): ${progress.slice(1).map((rounds, i) => rounds - progress[i]!).join(", ")}`);
    for (let i = 1; i < progress.length; i++) expect(progress[i], `rounds committed by the background tab after ${(i * SLICE_MS) / 1000} s hidden`).toBeGreaterThan(progress[i - 1]!);

    // Never dropped: the same identity throughout, a member now, and no departure of it on record.
    expect(await peerIdOf(background)).toBe(peerId);
    const status = await fetchStatus(server.url);
    expect(status.peers.find((peer) => peer.id === peerId)?.state).not.toBe("gone");
    expect(status.events.filter((event) => event.text.includes(peerId!) && /left|evicted|silent|strike/.test(event.kind + event.text))).toEqual([]);

    // And back in front, it is an ordinary tab again.
    await background.bringToFront();
    await background.waitForFunction(() => document.visibilityState === "visible");
  } finally {
    await chrome.close();
  }
});
