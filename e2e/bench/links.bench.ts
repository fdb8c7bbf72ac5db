// npm run bench:links — time to 90% test accuracy of three WebGPU tabs training the default MNIST MLP
// over emulated links, for each training setting (sync / DiLoCo x codec), against plain TF.js in one
// tab. Profiles (e2e/support/link-profiles.mjs): lan (no cap), thin (20 Mbit/s), bad (5 Mbit/s), one
// token bucket on the namespace's lo that every link shares; no added latency (no netem here).
// e2e/results/links.json, one section per profile/setting, so partial runs accumulate.
//   BENCH_LINK_PROFILES=thin   BENCH_LINK_SETTINGS="sync dense,diloco H=8 int8"   BENCH_LINK_RUN_S=300
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
import { insideE2eNamespace, setLinkProfile, type LinkProfile } from "../support/link-profile.ts";
import { fetchStatus, latestAccuracy, type Status } from "../support/status.ts";
import {
  bytesSentPerTabPerRound,
  computeUtilisation,
  firstOpenedAt,
  lastRoundLinkBytes,
  notableEvents,
  reachedTarget,
  roundMedians,
  runProblems,
  type TabSnapshot,
} from "./links-measure.ts";
import { formatLinks, PLAIN_SECTION, TARGETS_SECTION, targets, type LinkRow, type PlainRow } from "./links-report.ts";
import { innerStepsOf, LINK_SETTINGS, linkJob, pickProfiles, pickSettings, SYNC_EVAL_EVERY_ROUNDS, writeLinkJob, type LinkSetting } from "./links-settings.ts";
import { updateResults } from "./report.ts";

const RESULTS = "links";
const BACKEND = "webgpu";
const TABS = 3;
const TARGET_ACCURACY = 0.9;
/** Each run's cap from its first round opening, and the plain baseline's (BENCH_LINK_RUN_S). */
const RUN_MS = Number(process.env.BENCH_LINK_RUN_S ?? 300) * 1000;
/** From #start to every tab on WebGPU: SwiftShader's adapter and TF.js's backend set-up, three tabs on two cores. */
const BACKEND_TIMEOUT_MS = 90_000;
/** From #start to the first round opening: the tabs fetch the dataset (~8 s for three at thin) and join. */
const FIRST_ROUND_TIMEOUT_MS = 180_000;
/** Server start-up, page loads and teardown: what a test needs besides its own waits. */
const SETUP_SLACK_MS = 120_000;
/** Status polls: each moves tens of KB over the capped link, so not too often (the 90% time comes from the eval event). */
const POLL_MS = 2_000;
/** Unusual server events (strikes, aborts, errors) kept in each row, to explain a failed or slow run. */
const SERVER_EVENTS_KEPT = 30;
/** Whether lo is ours to shape; elsewhere only lan runs (as is, on the host network). */
const SHAPING = insideE2eNamespace();

if (!(RUN_MS > 0)) throw new Error(`BENCH_LINK_RUN_S must be a positive number of seconds, got ${process.env.BENCH_LINK_RUN_S}`);
if ((process.env.CROWDTRAIN_LINK ?? "lan") !== "lan") {
  throw new Error(`bench links sets its own link profiles; unset CROWDTRAIN_LINK (${process.env.CROWDTRAIN_LINK}) and pick them with BENCH_LINK_PROFILES`);
}
const PROFILES = pickProfiles(process.env.BENCH_LINK_PROFILES);
const SETTINGS = pickSettings(process.env.BENCH_LINK_SETTINGS);

type Outcome = "running" | "reached" | "capped" | "job done" | "no first round" | "tab stopped";

const backendOf = (page: Page): Promise<string | undefined> => page.evaluate(() => window.crowdtrainWorker?.status().backend);
const phaseOf = (page: Page): Promise<string | undefined> => page.evaluate(() => window.crowdtrainWorker?.status().phase);
const snapshotOf = (page: Page): Promise<TabSnapshot | undefined> =>
  page.evaluate(() => {
    const s = window.crowdtrainWorker?.status();
    return s === undefined ? undefined : { peerId: s.peerId, phase: s.phase, backend: s.backend, stopReason: s.stopReason, lastError: s.lastError, committed: s.committed, rounds: s.rounds };
  });

test("plain TF.js in one tab, no cap", async ({ openWorkers }) => {
  test.setTimeout(RUN_MS + SETUP_SLACK_MS);
  if (SHAPING) setLinkProfile("lan");
  const [page] = await openWorkers(1, "/lab.html");
  // The sync dense job: the same model, optimizer, batch and seed as every distributed run.
  const args = { job: linkJob(LINK_SETTINGS[0] as LinkSetting), backend: BACKEND, evalEverySteps: SYNC_EVAL_EVERY_ROUNDS, targetAccuracy: TARGET_ACCURACY, maxMs: RUN_MS };
  const report = await page!.evaluate((a) => window.crowdtrainLab.plainTrainTo(a), args);
  const row: PlainRow = {
    backend: report.backend,
    plainTfjsS: report.trainMsToTarget === null ? null : report.trainMsToTarget / 1000,
    plainWallS: report.wallMsToTarget === null ? null : report.wallMsToTarget / 1000,
    stepsTo90: report.stepsToTarget,
    evalEverySteps: SYNC_EVAL_EVERY_ROUNDS,
    finalAccuracy: report.finalAccuracy,
    measuredAt: new Date().toISOString(),
  };
  const results = updateResults<Record<string, unknown>>(RESULTS, PLAIN_SECTION, row);
  updateResults(RESULTS, TARGETS_SECTION, targets(results));
  console.log(`\n${formatLinks(results)}`);
  expect(report.backend).toBe(BACKEND);
});

/** Starts the tabs and polls until 90%, the cap, or a failure; then reads the figures. */
async function measureRun(serverUrl: string, pages: Page[], profile: LinkProfile, setting: LinkSetting): Promise<LinkRow> {
  for (const page of pages) await page.click("#start");
  const startedAt = Date.now();
  await expect.poll(() => Promise.all(pages.map(backendOf)), { timeout: BACKEND_TIMEOUT_MS, message: `every tab on ${BACKEND}` }).toEqual(pages.map(() => BACKEND));
  // Written by observe(), read after the poll: the last status, the first round's opening, why it stopped.
  const run = { status: undefined as Status | undefined, firstOpen: undefined as number | undefined, outcome: "running" as Outcome };
  const observe = async (): Promise<Outcome> => {
    const status = await fetchStatus(serverUrl);
    const firstOpen = firstOpenedAt(status, run.firstOpen);
    const now = Date.now();
    let outcome: Outcome = "running";
    if (reachedTarget(status, TARGET_ACCURACY) !== undefined) outcome = "reached";
    else if (status.status === "done") outcome = "job done";
    else if (firstOpen === undefined) outcome = now - startedAt > FIRST_ROUND_TIMEOUT_MS ? "no first round" : "running";
    else if (now - firstOpen >= RUN_MS) outcome = "capped";
    else if ((await Promise.all(pages.map(phaseOf))).includes("stopped")) outcome = "tab stopped";
    Object.assign(run, { status, firstOpen, outcome });
    return outcome;
  };
  // observe() decides when to stop (90%, the cap, a failure); this timeout is only a backstop.
  await expect.poll(observe, { timeout: FIRST_ROUND_TIMEOUT_MS + RUN_MS + 5 * POLL_MS, intervals: [POLL_MS] }).not.toBe("running");
  const { status: final, firstOpen, outcome } = run;
  if (outcome === "no first round") throw new Error(`no round opened within ${FIRST_ROUND_TIMEOUT_MS} ms of #start`);
  if (final === undefined || firstOpen === undefined) throw new Error(`run ended (${outcome}) before any round was seen`);
  const snapshots = await Promise.all(pages.map(snapshotOf));
  const tabs = snapshots.filter((s): s is TabSnapshot => s !== undefined);
  const reached = reachedTarget(final, TARGET_ACCURACY);
  const steps = innerStepsOf(setting);
  const { utilisation, rounds: utilisationRounds } = computeUtilisation(final, tabs);
  const medians = roundMedians(final);
  const problems = [...(tabs.length < pages.length ? [`${pages.length - tabs.length} tab(s) never started`] : []), ...runProblems(final, tabs, TABS)];
  return {
    profile,
    setting: setting.name,
    algorithm: setting.algorithm.kind,
    codec: setting.codec,
    innerSteps: steps,
    tabs: TABS,
    endedBy: outcome,
    timeTo90S: reached === undefined ? null : (reached.at - firstOpen) / 1000,
    roundsTo90: reached?.round ?? null,
    stepsTo90: reached === undefined ? null : reached.round * steps,
    runS: (final.now - firstOpen) / 1000,
    rounds: final.round,
    bytesSentPerTabPerRound: bytesSentPerTabPerRound(final),
    lastRoundLinkBytes: lastRoundLinkBytes(final),
    computeUtilisation: utilisation,
    utilisationRounds,
    roundMsMedian: medians.roundMs,
    computeMsMedian: medians.computeMs,
    allReduceMsMedian: medians.allReduceMs,
    finalAccuracy: latestAccuracy(final),
    tabNotes: [...new Set(tabs.flatMap((t) => (t.lastError === undefined ? [] : [t.lastError])))],
    problems,
    serverEvents: notableEvents(final, SERVER_EVENTS_KEPT),
    measuredAt: new Date().toISOString(),
  };
}

for (const profile of PROFILES) {
  for (const setting of SETTINGS) {
    test(`${profile}: ${setting.name}`, async ({ launchServer, openWorkers }) => {
      test.skip(profile !== "lan" && !SHAPING, `link profile ${profile} needs the e2e network namespace (root on Linux, through run-e2e.mjs)`);
      test.setTimeout(BACKEND_TIMEOUT_MS + FIRST_ROUND_TIMEOUT_MS + RUN_MS + SETUP_SLACK_MS);
      const dir = mkdtempSync(join(tmpdir(), "crowdtrain-bench-links-"));
      let row: LinkRow;
      try {
        // Servers start and pages load uncapped; the cap starts with #start (joining and the dataset download are capped too, but not timed).
        if (SHAPING) setLinkProfile("lan");
        const server = await launchServer(["--min-workers", String(TABS), "--job", writeLinkJob(dir, setting)]);
        const pages = await openWorkers(TABS, `/?backends=${BACKEND}`, server);
        if (SHAPING) setLinkProfile(profile);
        row = await measureRun(server.url, pages, profile, setting);
      } finally {
        if (SHAPING) setLinkProfile("lan");
        rmSync(dir, { recursive: true, force: true });
      }
      const results = updateResults<Record<string, unknown>>(RESULTS, `${profile}/${setting.name}`, row);
      updateResults(RESULTS, TARGETS_SECTION, targets(results));
      console.log(`\n${formatLinks(results)}`);
      expect(row.problems, `${profile}/${setting.name}`).toEqual([]);
    });
  }
}
