import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/lab-api.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
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
  await lab!.evaluate(() => window.crowdtrainLab.labDishonest({ attack: "sign-flip", backends: ["cpu"] }));

  const dishonestId = async (): Promise<string | undefined> => (await lab!.evaluate(() => window.crowdtrainLab.labDishonestStatus()))?.peerId;
  await expect.poll(dishonestId, { timeout: 60_000 }).toMatch(/^w-/);
  const attacker = (await dishonestId()) as string;

  // Caught by a spot check (each of its rounds is audited with probability 1/2), evicted, told why.
  await expect.poll(async () => (await fetchStatus(server.url)).peers.find((p) => p.id === attacker)?.leftBecause ?? "", { timeout: 2 * 60_000, ...POLL }).toMatch(/failed the spot check/);
  const atEviction = await fetchStatus(server.url);
  const failed = atEviction.audits?.recent.filter((a) => a.outcome === "failed") ?? [];
  expect(failed.map((a) => a.peer)).toEqual([attacker]);
  expect(failed[0]?.detail).toMatch(/from the CPU recomputation of its lease, above the tolerance/);
  // Its rounds were undone: the model went back to before its first round.
  expect(atEviction.events.filter((e) => e.kind === "rollback").map((e) => e.text).join("\n")).toMatch(/restarts from the state of round 0/);
  await expect.poll(() => lab!.evaluate(() => window.crowdtrainLab.labDishonestStatus()?.phase), { timeout: 30_000 }).toBe("stopped");

  await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: RUN_TIMEOUT_MS, ...POLL }).toBe("done");
  const final = await fetchStatus(server.url);
  expect(latestAccuracy(final)).toBeGreaterThanOrEqual(ACCURACY);
  const honestIds = await Promise.all(honest.map((page: Page) => page.evaluate(() => window.crowdtrainWorker?.status().peerId)));
  const honestAudits = (final.audits?.recent ?? []).filter((a) => honestIds.includes(a.peer));
  const spread = (backend: string) => {
    const ids = final.peers.filter((p) => p.backend === backend && honestIds.includes(p.id)).map((p) => p.id);
    return Math.max(0, ...honestAudits.filter((a) => ids.includes(a.peer)).map((a) => a.relativeError ?? 0));
  };
  console.log(`robust: ${honestAudits.length} honest audits; largest relative error webgpu ${spread("webgpu").toExponential(2)}, cpu ${spread("cpu").toExponential(2)} (tolerance ${final.audits?.tolerance})`);
  expect(honestAudits.length).toBeGreaterThan(10);
  expect(honestAudits.filter((a) => a.outcome !== "passed").map((a) => a.detail)).toEqual([]);
  for (const id of honestIds) {
    const row = final.peers.find((p) => p.id === id);
    expect(row?.leftBecause ?? "", `honest ${id}`).not.toMatch(/evicted|spot check/);
  }
  console.log(`robust: attacker evicted at round ${atEviction.round}; ${latestAccuracy(final)} test accuracy at round ${final.round}`);
});
