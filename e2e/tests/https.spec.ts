import type { BrowserContext, Page } from "@playwright/test";
import { expect, test } from "../fixtures.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { RequestGuard } from "../support/guard.ts";
import { insideE2eNamespace } from "../support/link-profile.ts";
import { startServerProcess, type ServerProcess } from "../support/server-process.ts";

/** The e2e namespace's veth address: not loopback, so only HTTPS makes its pages secure contexts. */
const NAMESPACE_ADDRESS = "10.88.0.1";
const JOB = ["--job", "e2e/jobs/few-rounds.json", "--min-workers", "1"];
/** One SwiftShader WebGPU tab, 4 rounds of a small MLP, after loading the page and the dataset. */
const TRAIN_TIMEOUT_MS = 90_000;

const committedRounds = (page: Page): Promise<number> => page.evaluate(() => window.crowdtrainWorker?.status().committed.length ?? 0);
const secureAndGpu = (page: Page): Promise<[boolean, boolean]> => page.evaluate(() => [isSecureContext, "gpu" in navigator]);

test("a tab opening the server by its namespace address gets WebGPU over HTTPS (self-signed) and trains; over plain HTTP it gets none", async ({ browser }) => {
  test.skip(!insideE2eNamespace(), `needs the e2e network namespace's address ${NAMESPACE_ADDRESS} (run the e2e tests as root)`);
  test.setTimeout(TRAIN_TIMEOUT_MS + 60_000);
  const servers: ServerProcess[] = [];
  const contexts: BrowserContext[] = [];
  try {
    const secure = await startServerProcess(NAMESPACE_ADDRESS, ["--tls-self-signed", ...JOB]);
    servers.push(secure);
    const plain = await startServerProcess(NAMESPACE_ADDRESS, JOB);
    servers.push(plain);
    expect(secure.url).toMatch(/^https:\/\/10\.88\.0\.1:\d+$/);
    const guard = new RequestGuard(secure.url);
    guard.allow(plain.url);
    const open = async (url: string, ignoreHTTPSErrors: boolean): Promise<Page> => {
      const context = await browser.newContext({ ignoreHTTPSErrors });
      contexts.push(context);
      await guard.install(context, contexts.length);
      const page = await context.newPage();
      await page.goto(url);
      return page;
    };

    // Plain HTTP to a non-loopback address: not a secure context, so the browser hides WebGPU, and
    // the page says why, with the https address.
    const insecure = await open(`${plain.url}/`, false);
    expect(await secureAndGpu(insecure)).toEqual([false, false]);
    await expect(insecure.locator("#insecure")).toBeVisible();
    await expect(insecure.locator("#insecure-link")).toHaveAttribute("href", `${plain.url.replace("http:", "https:")}/`);

    // HTTPS with the certificate accepted, as a volunteer does once: WebGPU, sockets over WSS, rounds commit.
    const page = await open(`${secure.url}/?backends=webgpu`, true);
    expect(await secureAndGpu(page)).toEqual([true, true]);
    await page.click("#start");
    await expect.poll(() => page.evaluate(() => window.crowdtrainWorker?.status().backend), { timeout: 60_000 }).toBe("webgpu");
    await expect.poll(() => committedRounds(page), { timeout: TRAIN_TIMEOUT_MS, intervals: [1_000] }).toBeGreaterThanOrEqual(4);
    const status = await page.evaluate(async () => (await fetch("/api/status")).json() as Promise<{ round: number; status: string }>);
    expect(status).toMatchObject({ round: 4, status: "done" });
    // The page shows the job, its end, and what this tab gave (it was the only one: all of it).
    await expect(page.locator("#insecure")).toBeHidden();
    await expect(page.locator("#job-name")).toHaveText("Job: e2e-few-rounds");
    await expect(page.locator("#job-progress-text")).toHaveText(/^finished: round 4 of 4 \(100%\)$/, { timeout: 15_000 });
    await expect(page.locator("#contribution")).toHaveText(/^4 rounds, 128 samples \(100\.0% of all 128 samples so far\)$/);
    expect(await page.locator("#loss-line").getAttribute("points")).toMatch(/^(\S+,\S+ ){3}\S+,\S+$/);
    guard.assertNothingBlocked();
  } finally {
    await Promise.all(contexts.map((context) => context.close()));
    await Promise.all(servers.map((server) => server.dispose()));
  }
});
