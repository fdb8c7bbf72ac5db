import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/lab-api.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
import { fetchStatus } from "../support/status.ts";

/**
 * A tab whose trainer fails mid-job (a GPU device lost: seen with eight SwiftShader tabs) starts
 * over with a fresh trainer instead of stopping: the lab's failing volunteer throws from its fifth
 * gradient, once. It leaves as one member and joins again as another (synced to the committed
 * state), trains on, and the job finishes with every tab holding the same weights at every round.
 * Every member is spot-checked after every commit (the job's spotCheck 1): the failure comes while
 * the tab computes the next lease ahead, its last report not yet committed, so it stays connected
 * for that commit and answers the audit it brings before it leaves. (Leaving at once failed that
 * audit and rolled round 4 back in 4 of 5 runs.)
 */
const JOB = "e2e/jobs/trainer-failure.json";
/** The job's rounds (e2e/jobs/trainer-failure.json). */
const TARGET_ROUNDS = 24;
const FAIL_AT_GRADIENT = 5;
const NAME = "failing-once";
const RUN_TIMEOUT_MS = 4 * 60_000;
const POLL = { intervals: [500, 1_000] };

const committedOf = (page: Page): Promise<[number, string][]> => page.evaluate(() => window.crowdtrainWorker?.status().committed ?? []);

/**
 * How the tab fails. A worker trainer starts over in a new Web Worker (a new GPU device). A page
 * trainer is disposed and a fresh one re-selects its backend in the same page's TF.js: on WebGPU
 * that must be a new backend instance, since TF.js keeps the one whose device was lost (the lab
 * destroys the page's device; before backend.ts renewed it, every restart failed the same way).
 */
const CASES: { what: string; how: { backends: string[]; forcePage: boolean; loseDevice: boolean } }[] = [
  { what: "a worker trainer that throws", how: { backends: ["cpu"], forcePage: false, loseDevice: false } },
  { what: "a page trainer that throws", how: { backends: ["cpu"], forcePage: true, loseDevice: false } },
  { what: "a page trainer whose WebGPU device is lost", how: { backends: ["webgpu"], forcePage: true, loseDevice: true } },
];

for (const { what, how } of CASES) {
  test(`a tab with ${what} starts over with a fresh one, rejoins and trains on; the job finishes with equal weights`, async ({ launchServer, openWorkers }) => {
    test.setTimeout(RUN_TIMEOUT_MS + 60_000);
    const server = await launchServer(["--min-workers", "3", "--job", JOB]);
    const honest = await openWorkers(2, "/?backends=cpu", server);
    for (const page of honest) await page.click("#start");
    const [lab] = await openWorkers(1, "/lab.html", server);
    await lab!.evaluate(([failAtGradient, name, how]) => window.crowdtrainLab.labFailing({ failAtGradient, name, ...how }), [FAIL_AT_GRADIENT, NAME, how] as const);
    const failing = () => lab!.evaluate(() => window.crowdtrainLab.labFailingStatus());

    // It fails at its fifth gradient, starts over under a new identity, and commits rounds again.
    await expect.poll(async () => (await failing())?.restarts, { timeout: RUN_TIMEOUT_MS, ...POLL }).toBe(1);
    await expect.poll(async () => (await failing())?.roundsDone ?? 0, { timeout: RUN_TIMEOUT_MS, ...POLL }).toBeGreaterThanOrEqual(2);
    const after = await failing();
    expect(after?.stopReason).toBeUndefined();

    await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: RUN_TIMEOUT_MS, ...POLL }).toBe("done");
    const status = await fetchStatus(server.url);
    expect(status.round).toBe(TARGET_ROUNDS);
    // Two members of that name: the first left when its trainer failed, the second is the one now.
    const selves = status.peers.filter((p) => p.name === NAME);
    expect(selves.map((p) => p.id)).toContain(after?.peerId);
    const gone = selves.find((p) => p.id !== after?.peerId);
    expect(gone?.state).toBe("gone");
    console.log(`${what}: ${gone?.id} left (${gone?.leftBecause}); rejoined as ${after?.peerId}, ${(await failing())?.roundsDone} rounds after; spot checks ${JSON.stringify(gone?.audits)} before, ${JSON.stringify(status.audits && { passed: status.audits.passed, failed: status.audits.failed })} in all`);
    // Every member is audited after every commit (the job's spotCheck 1), the failing tab too (it
    // passed some): it answers the audit it owes before it leaves, so no audit fails. (A rollback
    // would also have moved the target past TARGET_ROUNDS, which the round above rules out.)
    expect(gone?.audits?.passed).toBeGreaterThan(0);
    expect(status.audits?.failed).toBe(0);

    // Every round two or more tabs took part in committed the same weights in each of them.
    const logs = [...(await Promise.all(honest.map(committedOf))), (await failing())?.committed ?? []];
    const byRound = new Map<number, Set<string>>();
    for (const log of logs) for (const [round, hash] of log) byRound.set(round, (byRound.get(round) ?? new Set()).add(hash));
    const shared = [...byRound].filter(([round]) => logs.filter((log) => log.some(([r]) => r === round)).length > 1);
    expect(shared.length).toBeGreaterThanOrEqual(TARGET_ROUNDS - 2);
    for (const [round, hashes] of shared) expect(hashes.size, `round ${round}: ${[...hashes].join(" ")}`).toBe(1);
    // The rejoined tab was in the late rounds too.
    expect(((await failing())?.committed ?? []).some(([round]) => round >= TARGET_ROUNDS - 4)).toBe(true);
  });
}
