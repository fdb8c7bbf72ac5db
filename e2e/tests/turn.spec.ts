import { spawnSync } from "node:child_process";
import { expect, test } from "../fixtures.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { startCoturn } from "../support/coturn.ts";
import { insideE2eNamespace } from "../support/link-profile.ts";
import { fetchStatus } from "../support/status.ts";

/** The namespace's veth address: coturn listens and relays there; loopback peers it would refuse. */
const NAMESPACE_ADDRESS = "10.88.0.1";
const TURN_PORT = 3478;
/** Two tabs, 4 rounds of a small MLP, every byte between them through the relay. */
const TRAIN_TIMEOUT_MS = 90_000;
/** How long after the server's last commit the tabs may take to hear it and commit it too. */
const COMMIT_REACHES_TABS_MS = 10_000;

test("two tabs forced to relay-only ICE train through a coturn relay, with TURN credentials the server minted for each", async ({ launchServer, openWorkers }) => {
  test.skip(!insideE2eNamespace(), `needs the e2e network namespace's address ${NAMESPACE_ADDRESS} (run the e2e tests as root)`);
  expect(spawnSync("turnserver", ["--version"]).error, "turnserver is missing: apt-get install coturn (.ci/run does)").toBeUndefined();
  test.setTimeout(TRAIN_TIMEOUT_MS + 60_000);
  const turn = await startCoturn(NAMESPACE_ADDRESS, TURN_PORT);
  try {
    const server = await launchServer([
      ...["--job", "e2e/jobs/few-rounds.json", "--min-workers", "2"],
      ...["--turn-url", turn.url, "--turn-secret", turn.secret, "--ice-transport-policy", "relay"],
    ]);
    const pages = await openWorkers(2, "/", server);
    for (const page of pages) await page.click("#start");
    await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: TRAIN_TIMEOUT_MS, intervals: [1_000] }).toBe("done");
    const status = await fetchStatus(server.url);
    expect(status.round).toBe(4);
    // Both tabs took part in every round: the ring all-reduce ran between them, relayed. The server is
    // done when it commits round 4; a tab commits it when the commit message reaches it, a moment later.
    const committedOf = (page: (typeof pages)[number]) => page.evaluate(() => window.crowdtrainWorker?.status().committed ?? []);
    await expect.poll(async () => (await Promise.all(pages.map(committedOf))).map((log) => log.length), { timeout: COMMIT_REACHES_TABS_MS }).toEqual([4, 4]);
    const logs = await Promise.all(pages.map(committedOf));
    expect(logs[0]).toEqual(logs[1]);
    expect(logs[0]?.map(([round]) => round)).toEqual([1, 2, 3, 4]);
    // coturn checked each tab's own credentials (username <expiry>:<peer id>) and allocated a relay.
    for (const peer of status.peers) {
      expect(turn.log().some((line) => line.includes(`:${peer.id}>`) && /ALLOCATE processed, success/.test(line)), `an allocation for ${peer.id}`).toBe(true);
    }
  } finally {
    await turn.stop();
  }
});
