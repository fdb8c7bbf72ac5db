// npm run bench:serve — the inference API under load. Two parts, each with its own server:
// 1. throughput: plain TF.js predict in one lab tab (batch 1 and the serving batch) against one
//    ?role=server tab answering a closed loop of single-row requests through the whole path
//    (HTTP, server, serve socket, batching, the tab's trainer worker), same backend, same run;
// 2. autoscaling: the default job on 6 tabs, an open loop ramping from 5 to 200 requests/s over
//    60 s, holding 60 s (a serving tab closed 30 s into the hold), then 0 for 60 s, the pool watched
//    until it shrinks back (at most BENCH_TAIL_S more).
// e2e/results/serve.json: a row per 5 s window, a summary, and the throughput comparison.
// BENCH_BACKEND=webgpu (default) | cpu | wasm; BENCH_PEAK_RPS=200; BENCH_TAIL_S=60.
import { readFileSync } from "node:fs";
import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
import { ramp, runClosedLoop, runLoad, type Outcome } from "../support/load.ts";
import { fetchStatus, type Status } from "../support/status.ts";
import { median, table, updateResults } from "./report.ts";

const BACKEND = process.env.BENCH_BACKEND ?? "webgpu";
const PEAK_RPS = Number(process.env.BENCH_PEAK_RPS ?? "200");
const TAIL_S = Number(process.env.BENCH_TAIL_S ?? "60");
const JOB_FILE = "apps/server/jobs/mnist-mlp.json";
/** The server's default --serve-max-batch: the batch a serving tab predicts at most. */
const SERVE_BATCH = 32;
const PLAIN_SECONDS = 8;
const CLOSED_LOOP_SECONDS = 10;
const CLOSED_LOOP_CLIENTS = 32;
/** The latency objective the summary's best rate is measured under. */
const SLO_P99_MS = 250;
const RAMP_S = 60;
const HOLD_S = 60;
const DROP_S = 60;
const KILL_AT_S = RAMP_S + 30;
const FEATURES = 784;
const INPUT = Array.from({ length: FEATURES }, (_, i) => ((i * 37) % 255) / 255);

const phaseOf = (page: Page): Promise<string | undefined> => page.evaluate(() => window.crowdtrainWorker?.status().phase);

test("serving throughput: one serving tab against plain TF.js predict in one tab", async ({ launchServer, openWorkers }) => {
  test.setTimeout(5 * 60_000);
  // --serve-max-tabs 0: only the ?role=server tab serves, so the pool is exactly one tab.
  const server = await launchServer(["--job", JOB_FILE, "--serve-max-tabs", "0"]);
  const job = JSON.parse(readFileSync(JOB_FILE, "utf8")) as unknown;
  const [lab] = await openWorkers(1, "/lab.html", server);
  const plainOne = await lab!.evaluate((a) => window.crowdtrainLab.plainPredict(a), { job, backend: BACKEND, batch: 1, seconds: PLAIN_SECONDS });
  const plainBatch = await lab!.evaluate((a) => window.crowdtrainLab.plainPredict(a), { job, backend: BACKEND, batch: SERVE_BATCH, seconds: PLAIN_SECONDS });
  await lab!.close();
  const [tab] = await openWorkers(1, `/?role=server&backends=${BACKEND}`, server);
  await tab!.click("#start");
  await expect.poll(() => phaseOf(tab!), { timeout: 120_000 }).toBe("serving");
  const outcomes = await runClosedLoop(`${server.url}/api/predict`, INPUT, CLOSED_LOOP_CLIENTS, CLOSED_LOOP_SECONDS);
  const ok = outcomes.filter((o) => o.status === 200);
  const agent = await tab!.evaluate(() => window.crowdtrainWorker?.status().serving);
  const servedRps = ok.length / CLOSED_LOOP_SECONDS;
  const result = {
    backend: plainOne.backend,
    plainBatch1RowsPerSecond: plainOne.rowsPerSecond,
    plainBatch1MsPerCall: plainOne.msPerCall,
    plainBatchRowsPerSecond: plainBatch.rowsPerSecond,
    plainBatchMsPerCall: plainBatch.msPerCall,
    servingBatch: SERVE_BATCH,
    servingRps: servedRps,
    servingFailed: outcomes.length - ok.length,
    servingMedianMs: median(ok.map((o) => o.ms)),
    servingRowsPerBatch: agent === undefined ? null : agent.rows / Math.max(1, agent.batches),
    servingPredictMsPerBatch: agent === undefined ? null : agent.predictMs / Math.max(1, agent.batches),
    ratioToPlainBatch1: servedRps / plainOne.rowsPerSecond,
    ratioToPlainBatch: servedRps / plainBatch.rowsPerSecond,
  };
  updateResults("serve", "throughput", result);
  console.log(
    table(
      ["", "rows/s", "ms/call"],
      [
        [`plain TF.js, batch 1 (${result.backend})`, plainOne.rowsPerSecond.toFixed(0), plainOne.msPerCall.toFixed(2)],
        [`plain TF.js, batch ${SERVE_BATCH}`, plainBatch.rowsPerSecond.toFixed(0), plainBatch.msPerCall.toFixed(2)],
        [`one serving tab, ${CLOSED_LOOP_CLIENTS} clients`, servedRps.toFixed(0), `${(result.servingPredictMsPerBatch ?? Number.NaN).toFixed(2)} (${(result.servingRowsPerBatch ?? Number.NaN).toFixed(1)} rows)`],
      ],
    ),
  );
  console.log(`serving / plain batch 1: ${result.ratioToPlainBatch1.toFixed(2)}; serving / plain batch ${SERVE_BATCH}: ${result.ratioToPlainBatch.toFixed(2)}; failed ${result.servingFailed}`);
  expect(result.servingFailed).toBe(0);
});

test("serving autoscaling: ramp, hold with a serving tab closed, drop to zero", async ({ launchServer, openWorkers }) => {
  test.setTimeout((RAMP_S + HOLD_S + DROP_S + TAIL_S) * 1000 + 6 * 60_000);
  const server = await launchServer(["--job", JOB_FILE, "--min-workers", "1", "--serve-max-tabs", "5"]);
  const pages = await openWorkers(6, `/?backends=${BACKEND}`, server);
  for (const page of pages) await page.click("#start");
  await expect.poll(async () => (await fetchStatus(server.url)).round, { timeout: 180_000 }).toBeGreaterThanOrEqual(2);
  const roundAtStart = (await fetchStatus(server.url)).round;
  const loadStart = Date.now();
  let killed: string | undefined;
  const schedule = (t: number): number => (t < RAMP_S ? ramp(5, PEAK_RPS, RAMP_S)(t) : t < RAMP_S + HOLD_S ? PEAK_RPS : 0);
  const outcomes: Outcome[] = await runLoad(`${server.url}/api/predict`, INPUT, schedule, RAMP_S + HOLD_S, (t) => {
    if (t !== KILL_AT_S || killed !== undefined) return;
    killed = "pending";
    void (async () => {
      for (const page of pages) {
        if ((await phaseOf(page)) !== "serving") continue;
        killed = await page.evaluate(() => window.crowdtrainWorker?.status().peerId);
        await page.close();
        return;
      }
      killed = "none serving";
    })();
  });
  // The drop: no load; watch the pool shrink back (bounded).
  const dropStart = Date.now();
  let scaleDownS: number | null = null;
  let status: Status = await fetchStatus(server.url);
  while (Date.now() - dropStart < (DROP_S + TAIL_S) * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    status = await fetchStatus(server.url);
    const serving = status.serving;
    if (scaleDownS === null && serving !== undefined && serving.poolSize <= serving.minTabs) scaleDownS = (Date.now() - dropStart) / 1000;
    if (scaleDownS !== null && Date.now() - dropStart >= DROP_S * 1000) break;
  }
  const serving = status.serving;
  if (serving === undefined) throw new Error("the server reports no serving status");
  const ok = outcomes.filter((o) => o.status === 200);
  const windows = serving.windows.filter((w) => w.at > loadStart).map((w) => ({ t: Math.round((w.at - loadStart) / 1000), ...w }));
  const underSlo = windows.filter((w) => w.p99Ms !== undefined && w.p99Ms <= SLO_P99_MS);
  const firstUp = serving.decisions.find((d) => d.at >= loadStart && d.to > d.from);
  const summary = {
    backend: BACKEND,
    peakRps: PEAK_RPS,
    requests: outcomes.length,
    maxRpsAtP99UnderSlo: underSlo.length === 0 ? 0 : Math.max(...underSlo.map((w) => w.servedRps)),
    /** From the start of the ramp to the first growth of the pool. */
    scaleUpReactionS: firstUp === undefined ? null : (firstUp.at - loadStart) / 1000,
    /** From the drop to zero until the pool is back at its minimum (null: not within the drop and tail). */
    scaleDownS,
    maxPool: Math.max(0, ...windows.map((w) => w.poolSize)),
    failed: outcomes.length - ok.length,
    failures: [...new Set(outcomes.filter((o) => o.status !== 200).map((o) => `${o.status} ${o.error ?? ""}`.slice(0, 120)))].slice(0, 5),
    lost: outcomes.filter((o) => o.status === 0).length,
    /** Answers the server counted beyond the 200s the clients got (an answer given twice). */
    duplicated: serving.served - ok.length,
    killedTab: killed ?? null,
    roundsDuringLoad: status.round - roundAtStart,
    decisions: serving.decisions.filter((d) => d.at >= loadStart).map((d) => ({ t: (d.at - loadStart) / 1000, from: d.from, to: d.to, panic: d.panic, reason: d.reason })),
  };
  updateResults("serve", "autoscaling", { summary, windows });
  const cell = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(0));
  console.log(
    table(
      ["t s", "offered/s", "served/s", "p50", "p95", "p99", "pool", "queue", "errors"],
      windows.map((w) => [String(w.t), w.offeredRps.toFixed(1), w.servedRps.toFixed(1), cell(w.p50Ms), cell(w.p95Ms), cell(w.p99Ms), String(w.poolSize), String(w.queueDepth), String(w.errors)]),
    ),
  );
  console.log(JSON.stringify({ ...summary, decisions: summary.decisions.length }));
  for (const d of summary.decisions) console.log(`  ${d.t.toFixed(0)} s: ${d.from} -> ${d.to}${d.panic ? " (panic)" : ""}: ${d.reason}`);
  expect(summary.lost).toBe(0);
  expect(summary.duplicated).toBe(0);
});
