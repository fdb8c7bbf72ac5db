import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/lab-api.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
import { INTENSIVE_THROTTLING_GRACE_S, sendToBackground, timerWakeupsPerSecond, UnmanagedChromium, watchBackground } from "../support/background-tab.ts";
import { expectCaughtAndRolledBack, expectHonestAuditsPassed, startSignFlipper } from "../support/robust-checks.ts";
import { fetchStatus, latestAccuracy } from "../support/status.ts";
import { describeWorkers } from "../support/worker-status.ts";

/**
 * One dishonest tab among three honest ones, on a job that aggregates with CenteredClip over a
 * direct plan and spot-checks half of the contributions. The tab flips the sign of its gradient:
 * its norm is honest, so clipping does not single it out; only replication does. Its first audited
 * round fails (the server's CPU recomputation of its lease points the other way), it is evicted,
 * and every round it touched is rolled back. The honest tabs (one on WebGPU, two on the CPU
 * backend) pass every audit, which measures the real spread between those backends and the
 * server's CPU backend against the tolerance; the job still reaches its accuracy.
 *
 * The WebGPU tab spends the run in the background, as a volunteer's tab does when they press Start
 * and switch to another (support/background-tab.ts: hidden, its timers throttled by Chromium): for
 * two minutes it keeps committing rounds, passes its audits, and is never dropped.
 */
/**
 * Its 400 rounds must outlast the two hidden minutes (tabs here commit about a round a second; at
 * 100 rounds the job once finished 117 s in, and the last slice saw no round): the test ends the job
 * at the next round once they are over.
 */
const JOB = "e2e/jobs/robust.json";
const ACCURACY = 0.85;
const RUN_TIMEOUT_MS = 6 * 60_000;
const ADMIN_TOKEN = "e2e-robust-admin";
const POLL = { intervals: [500, 1_000] };
/** The bar: a volunteer who switches tabs for two minutes still trains. */
const HIDDEN_MS = 125_000;
/** Each slice of the hidden time must see the background tab commit at least one round. */
const SLICE_MS = 25_000;
/** A visible tab's 50 ms interval runs ~20 times a second; Chromium wakes a background tab's timers about once a second. */
const MAX_BACKGROUND_WAKEUPS_PER_S = 3;

const roundsDone = (page: Page): Promise<number> => page.evaluate(() => window.crowdtrainWorker?.status().roundsDone ?? 0);
const peerIdOf = (page: Page): Promise<string | undefined> => page.evaluate(() => window.crowdtrainWorker?.status().peerId);

test("a tab flipping its gradient's sign fails a spot check, is evicted and rolled back; honest tabs, one in the background for two minutes, pass every audit and are never dropped; training reaches its accuracy", async ({ launchServer, openWorkers, guard }, testInfo) => {
  test.setTimeout(RUN_TIMEOUT_MS + 60_000);
  const server = await launchServer(["--min-workers", "4", "--job", JOB, "--admin-token", ADMIN_TOKEN]);
  const chrome = await UnmanagedChromium.launch();
  try {
    await guard.install(chrome.context, 100);
    const background = await chrome.firstPage();
    await background.goto(`${server.url}/?backends=webgpu`);
    // The volunteer presses Start and switches to another tab: the WebGPU tab is hidden, its timers
    // throttled, before it trains at all. (Hidden mid-round instead, in full e2e runs on this 2-core
    // machine, it sat 30 s to minutes without progress; see e2e/README.md.)
    const front = await sendToBackground(background);
    const wakeups = await timerWakeupsPerSecond(background, 3_000);
    expect(wakeups).toBeLessThanOrEqual(MAX_BACKGROUND_WAKEUPS_PER_S);
    await background.evaluate(() => document.querySelector<HTMLButtonElement>("#start")?.click());
    const honest = [background, ...(await openWorkers(2, "/?backends=cpu", server))];
    const [lab] = await openWorkers(1, "/lab.html", server);
    for (const page of honest.slice(1)) await page.click("#start");
    const attacker = await startSignFlipper(lab!);

    // The two minutes count from its first round committed in the background.
    await expect.poll(() => roundsDone(background), { timeout: 90_000, intervals: [500] }).toBeGreaterThanOrEqual(1);
    const backgroundId = await peerIdOf(background);
    expect(backgroundId).toMatch(/^w-/);
    console.log(`robust: background (webgpu) ${backgroundId}, cpu ${(await Promise.all(honest.slice(1).map(peerIdOf))).join(", ")}, attacker ${attacker}`);
    const hiddenAt = Date.now();
    const watch = watchBackground(background, SLICE_MS);

    // Caught by a spot check (each of its rounds is audited with probability 1/2), evicted, told why.
    const atEviction = await expectCaughtAndRolledBack(server.url, lab!, attacker);

    // Two minutes in the background: hidden at every look, committing in every slice.
    const slices = Math.ceil(HIDDEN_MS / SLICE_MS);
    await expect.poll(() => watch.count(), { timeout: HIDDEN_MS + SLICE_MS, intervals: [1_000] }).toBeGreaterThanOrEqual(slices + 1);
    const samples = watch.stop();
    expect(Date.now() - hiddenAt).toBeGreaterThanOrEqual(HIDDEN_MS);
    console.log(`robust: background tab, a 50 ms interval ran ${wakeups.toFixed(1)} times a second; rounds committed per ${SLICE_MS / 1000} s hidden (intensive throttling from ${INTENSIVE_THROTTLING_GRACE_S} s): ${samples.slice(1).map((s, i) => s.roundsDone - samples[i]!.roundsDone).join(", ")}`);
    expect(samples.map((s) => s.visibility)).toEqual(samples.map(() => "hidden"));
    for (let i = 1; i < samples.length; i++) expect(samples[i]!.roundsDone, `rounds the background tab committed by ${(i * SLICE_MS) / 1000} s hidden (samples: ${JSON.stringify(samples)})`).toBeGreaterThan(samples[i - 1]!.roundsDone);
    // Never dropped meanwhile: the same identity, and no departure, eviction or strike of it on
    // record before the job ended (when it ends, every member is told to stop and leaves).
    expect(await peerIdOf(background)).toBe(backgroundId);
    const afterHidden = await fetchStatus(server.url);
    const endedAt = afterHidden.events.find((e) => e.kind === "done")?.at ?? Infinity;
    if (afterHidden.status !== "done") expect(afterHidden.peers.find((p) => p.id === backgroundId)?.state).not.toBe("gone");
    expect(afterHidden.events.filter((e) => e.at < endedAt && e.text.startsWith(backgroundId!) && /^(left|evicted|strike)$/.test(e.kind)).map((e) => e.text)).toEqual([]);
    await background.bringToFront();
    await front.close();
    // What the rest of the job would train adds nothing this test checks: it ends at the next round
    // (CI has 15 minutes).
    const target = await fetch(`${server.url}/api/admin/target`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ rounds: (await fetchStatus(server.url)).round + 1 }),
      signal: AbortSignal.timeout(10_000),
    });
    // 409: the job had already finished on its own.
    expect([200, 409]).toContain(target.status);

    await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: RUN_TIMEOUT_MS, ...POLL }).toBe("done");
    const final = await fetchStatus(server.url);
    expect(latestAccuracy(final)).toBeGreaterThanOrEqual(ACCURACY);
    const honestIds = await Promise.all(honest.map(peerIdOf));
    const honestAudits = expectHonestAuditsPassed(final, honestIds);
    expect(honestAudits.some((a) => a.peer === backgroundId)).toBe(true);
    expect(honestAudits.filter((a) => a.outcome !== "passed").map((a) => a.detail)).toEqual([]);
    // No honest tab was struck or evicted (the job may have ended: members leave when it is done).
    expect(honestIds).toContain(backgroundId);
    for (const id of honestIds) expect(final.events.filter((e) => e.text.startsWith(id!) && /^(evicted|strike)$/.test(e.kind)).map((e) => e.text), `honest ${id}`).toEqual([]);
    console.log(`robust: attacker evicted at round ${atEviction.round}; ${latestAccuracy(final)} test accuracy at round ${final.round}`);
  } catch (error) {
    // The other tabs' status is attached by openWorkers; this one lives in a browser of its own.
    await testInfo.attach("background-tab-status", { body: await describeWorkers([{ label: "background tab", page: await chrome.firstPage() }]), contentType: "text/plain" });
    throw error;
  } finally {
    await chrome.close();
  }
});
