// npm run bench:train — (1) one tab: our training step vs plain TF.js, same model, batch and
// backend; (2) N tabs training for real (BENCH_TRAIN_PEERS, default 1, 2, 4): where a round's time
// goes. e2e/results/train.json; `npm run sim:validate -- --train` compares the simulator's rounds with it.
import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
import { fetchStatus } from "../support/status.ts";
import { median, table, updateResults } from "./report.ts";

const BACKEND = process.env.BENCH_BACKEND ?? "webgpu";
const STEPS = Number(process.env.BENCH_STEPS ?? 30);
const WARMUP_STEPS = 5;
/** Rounds skipped at the start of a real run: shader compilation and first uploads. */
const WARMUP_ROUNDS = 3;
const HIDDEN = [128];
const BATCH = 96;
const RUN_TIMEOUT_MS = 10 * 60_000;
const PEER_COUNTS = (process.env.BENCH_TRAIN_PEERS ?? "1,2,4").split(",").map(Number);
if (PEER_COUNTS.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`BENCH_TRAIN_PEERS must be tab counts separated by commas, got "${process.env.BENCH_TRAIN_PEERS}"`);
const PHASES = ["computeMs", "readbackMs", "allReduceMs", "updateMs", "uploadMs"] as const;

type Split = Record<(typeof PHASES)[number] | "roundMs" | "otherMs", number>;

test("one tab: our step vs plain TF.js", async ({ openWorkers }) => {
  test.setTimeout(RUN_TIMEOUT_MS);
  const [page] = await openWorkers(1, "/lab.html");
  const report = await page!.evaluate((args) => window.crowdtrainLab.trainStepBench(args), { backend: BACKEND, hidden: HIDDEN, batch: BATCH, steps: STEPS, warmup: WARMUP_STEPS });
  const oursMs = median(report.oursMs);
  const plainMs = median(report.plainMs);
  const row = { backend: report.backend, model: `mlp 784-${HIDDEN.join("-")}-10`, weights: report.weights, batch: BATCH, steps: STEPS, oursMs, plainMs, overheadRatio: oursMs / plainMs };
  updateResults("train", `step-${report.backend}`, row);
  console.log(`\n${table(["backend", "model", "batch", "ours ms", "plain TF.js ms", "overheadRatio"], [[row.backend, row.model, String(BATCH), oursMs.toFixed(1), plainMs.toFixed(1), row.overheadRatio.toFixed(3)]])}`);
  expect(report.backend).toBe(BACKEND);
});

for (const n of PEER_COUNTS) {
    test(`round split with N=${n}`, async ({ launchServer, openWorkers }) => {
      test.setTimeout(RUN_TIMEOUT_MS);
      const server = await launchServer(["--min-workers", String(n), "--job", "e2e/jobs/bench-train.json"]);
      const pages = await openWorkers(n, `/?backends=${BACKEND}`, server);
      const startedOver: string[] = [];
      // What volunteer.ts says when a trainer fails and a fresh one is started (or cannot be).
      const restartLine = /^(the trainer failed|starting over|disposing the trainer|could not start over)/;
      for (const page of pages) page.on("console", (message) => restartLine.test(message.text()) && startedOver.push(message.text().split("\n")[0]!.slice(0, 300)));
      for (const page of pages) await page.click("#start");
      await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: RUN_TIMEOUT_MS - 60_000, intervals: [2_000] }).toBe("done");
      // Commit to commit, as the server saw it: a round's time in throughput (a tab's own split
      // starts at its round message, after a lease computed ahead may have run).
      const commits = (await fetchStatus(server.url)).recentRounds.filter((r) => r.round > WARMUP_ROUNDS).map((r) => r.at);
      const intervalMs = median(commits.slice(1).map((at, k) => at - commits[k]!));
      const splits = (await Promise.all(pages.map((p: Page) => p.evaluate(() => window.crowdtrainWorker?.status().rounds ?? [])))).flat();
      const measured = splits.filter((s) => s.round > WARMUP_ROUNDS);
      expect(measured.length).toBeGreaterThan(0);
      const split = Object.fromEntries([...PHASES, "roundMs"].map((key) => [key, median(measured.map((s) => s[key as keyof typeof s] as number))])) as Split;
      split.otherMs = Math.max(0, split.roundMs - PHASES.reduce((sum, key) => sum + split[key], 0));
      const shares = Object.fromEntries([...PHASES, "otherMs"].map((key) => [key.replace("Ms", "Share"), split[key as keyof Split] / split.roundMs]));
      // Tabs that started over with a fresh trainer (a GPU device lost: 2 of 4 runs at eight SwiftShader tabs lost them all once).
      const restarts = await Promise.all(pages.map((p: Page) => p.evaluate(() => window.crowdtrainWorker?.status().restarts ?? 0)));
      if (restarts.some((r) => r > 0)) console.log(`restarts per tab: ${restarts.join(", ")}\n${[...new Set(startedOver)].join("\n")}`);
      const results = updateResults<{ rounds?: Record<string, unknown> }>("train", `n${n}`, { n, backend: BACKEND, rounds: measured.length, intervalMs, restarts: restarts.reduce((a, b) => a + b, 0), ...split, ...shares });
      const rows = Object.entries(results as Record<string, unknown>).flatMap(([key, value]) => {
        if (!/^n\d+$/.test(key)) return [];
        const r = value as Split & { n: number; intervalMs?: number };
        const cell = (key: keyof Split): string => `${r[key].toFixed(1)} (${((r[key] / r.roundMs) * 100).toFixed(0)}%)`;
        return [[String(r.n), r.intervalMs?.toFixed(1) ?? "-", r.roundMs.toFixed(1), cell("computeMs"), cell("readbackMs"), cell("allReduceMs"), cell("updateMs"), cell("uploadMs"), cell("otherMs")]];
      });
      console.log(`\n${table(["N", "commit to commit ms", "tab's round ms", "compute", "read-back", "all-reduce", "update", "upload", "other (commit wait)"], rows)}`);
    });
}
