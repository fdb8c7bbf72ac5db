import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/lab-api.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
import { expectCaughtAndRolledBack, expectHonestAuditsPassed, startSignFlipper } from "../support/robust-checks.ts";
import { fetchStatus, latestAccuracy } from "../support/status.ts";

/**
 * One dishonest tab among three honest ones, on a job that aggregates with CenteredClip over a
 * direct plan and spot-checks half of the contributions. The tab flips the sign of its gradient:
 * its norm is honest, so clipping does not single it out; only replication does. Its first audited
 * round fails (the server's CPU recomputation of its lease points the other way), it is evicted,
 * and every round it touched is rolled back. The honest tabs (one on WebGPU, two on the CPU
 * backend) pass every audit, which measures the real spread between those backends and the
 * server's CPU backend against the tolerance; the job still reaches its accuracy.
 */
const JOB = "e2e/jobs/robust.json";
const ACCURACY = 0.85;
const RUN_TIMEOUT_MS = 6 * 60_000;
const POLL = { intervals: [500, 1_000] };

test("a tab flipping its gradient's sign fails a spot check, is evicted and rolled back; honest tabs pass every audit and training reaches its accuracy", async ({ launchServer, openWorkers }) => {
  test.setTimeout(RUN_TIMEOUT_MS + 60_000);
  const server = await launchServer(["--min-workers", "4", "--job", JOB]);
  const honest = [...(await openWorkers(1, "/?backends=webgpu", server)), ...(await openWorkers(2, "/?backends=cpu", server))];
  const [lab] = await openWorkers(1, "/lab.html", server);
  for (const page of honest) await page.click("#start");
  const attacker = await startSignFlipper(lab!);

  // Caught by a spot check (each of its rounds is audited with probability 1/2), evicted, told why.
  const atEviction = await expectCaughtAndRolledBack(server.url, lab!, attacker);

  await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: RUN_TIMEOUT_MS, ...POLL }).toBe("done");
  const final = await fetchStatus(server.url);
  expect(latestAccuracy(final)).toBeGreaterThanOrEqual(ACCURACY);
  const honestIds = await Promise.all(honest.map((page: Page) => page.evaluate(() => window.crowdtrainWorker?.status().peerId)));
  expectHonestAuditsPassed(final, honestIds);
  console.log(`robust: attacker evicted at round ${atEviction.round}; ${latestAccuracy(final)} test accuracy at round ${final.round}`);
});
