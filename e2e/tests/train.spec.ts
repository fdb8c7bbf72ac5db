import type { Page } from "@playwright/test";
import { expect, test } from "../fixtures.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { fetchStatus, latestAccuracy } from "../support/status.ts";

/** SwiftShader WebGPU on two shared cores: ~100 rounds of MLP 784-128-10 take a few minutes. */
const TRAIN_TIMEOUT_MS = 12 * 60_000;
const POLL = { intervals: [1_000, 2_000, 5_000] };

type Committed = [round: number, hash: string][];

async function start(pages: Page[]): Promise<void> {
  for (const page of pages) await page.click("#start");
}

const committedOf = (page: Page): Promise<Committed> => page.evaluate(() => window.crowdtrainWorker?.status().committed ?? []);
const backendOf = (page: Page): Promise<string | undefined> => page.evaluate(() => window.crowdtrainWorker?.status().backend);

/** Every round committed by more than one tab has the same weights hash in all of them. */
async function expectEqualHashes(pages: Page[], minRounds: number): Promise<void> {
  const logs = await Promise.all(pages.map(committedOf));
  const byRound = new Map<number, Set<string>>();
  for (const log of logs) for (const [round, hash] of log) byRound.set(round, (byRound.get(round) ?? new Set()).add(hash));
  const shared = [...byRound].filter(([round]) => logs.filter((log) => log.some(([r]) => r === round)).length > 1);
  expect(shared.length).toBeGreaterThanOrEqual(minRounds);
  for (const [round, hashes] of shared) expect(hashes.size, `round ${round}: ${[...hashes].join(" ")}`).toBe(1);
}

test("three webgpu tabs train the MNIST MLP to 90% test accuracy with equal hashes in every committed round", async ({ launchServer, openWorkers }) => {
    test.setTimeout(TRAIN_TIMEOUT_MS + 60_000);
    const server = await launchServer(["--min-workers", "3", "--job", "e2e/jobs/mnist-mlp-90.json"]);
    const pages = await openWorkers(3, "/?backends=webgpu", server);
    await start(pages);
    await expect.poll(() => Promise.all(pages.map(backendOf)), { timeout: 60_000 }).toEqual(["webgpu", "webgpu", "webgpu"]);
    await expect.poll(async () => latestAccuracy(await fetchStatus(server.url)), { timeout: TRAIN_TIMEOUT_MS, ...POLL }).toBeGreaterThanOrEqual(0.9);
    const status = await fetchStatus(server.url);
    expect(status.peers.map((p) => p.backend)).toEqual(["webgpu", "webgpu", "webgpu"]);
    await expectEqualHashes(pages, status.round - 2);
    const reached = status.accuracy.find((point) => point.accuracy >= 0.9);
    test.info().annotations.push({ type: "rounds to 90%", description: String(reached?.round) });
    console.log(`90% test accuracy first measured at round ${reached?.round} (evaluated every 10 rounds)`);
});

test("mixed backends: a CPU tab and two WebGPU tabs still hold bit-identical weights after every round", async ({ launchServer, openWorkers }) => {
    test.setTimeout(5 * 60_000);
    const server = await launchServer(["--min-workers", "3", "--job", "e2e/jobs/mnist-mlp-short.json"]);
    const pages = [...(await openWorkers(2, "/?backends=webgpu", server)), ...(await openWorkers(1, "/?backends=cpu", server))];
    await start(pages);
    await expect.poll(() => Promise.all(pages.map(backendOf)), { timeout: 60_000 }).toEqual(["webgpu", "webgpu", "cpu"]);
    await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: 4 * 60_000, ...POLL }).toBe("done");
    await expectEqualHashes(pages, 15);
    const status = await fetchStatus(server.url);
    expect(status.loss.at(-1)![1]).toBeLessThan(status.loss[0]![1]);
});
