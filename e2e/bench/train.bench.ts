// npm run bench:train — (1) one tab: our training step vs plain TF.js, same model, batch and
// backend; (2) N = 1, 2, 4 tabs training for real: where a round's time goes. e2e/results/train.json.
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

for (const n of [1, 2, 4]) {
    test(`round split with N=${n}`, async ({ launchServer, openWorkers }) => {
      test.setTimeout(RUN_TIMEOUT_MS);
      const server = await launchServer(["--min-workers", String(n), "--job", "e2e/jobs/bench-train.json"]);
      const pages = await openWorkers(n, `/?backends=${BACKEND}`, server);
      for (const page of pages) await page.click("#start");
      await expect.poll(async () => (await fetchStatus(server.url)).status, { timeout: RUN_TIMEOUT_MS - 60_000, intervals: [2_000] }).toBe("done");
      const splits = (await Promise.all(pages.map((p: Page) => p.evaluate(() => window.crowdtrainWorker?.status().rounds ?? [])))).flat();
      const measured = splits.filter((s) => s.round > WARMUP_ROUNDS);
      expect(measured.length).toBeGreaterThan(0);
      const split = Object.fromEntries([...PHASES, "roundMs"].map((key) => [key, median(measured.map((s) => s[key as keyof typeof s] as number))])) as Split;
      split.otherMs = Math.max(0, split.roundMs - PHASES.reduce((sum, key) => sum + split[key], 0));
      const shares = Object.fromEntries([...PHASES, "otherMs"].map((key) => [key.replace("Ms", "Share"), split[key as keyof Split] / split.roundMs]));
      const results = updateResults<{ rounds?: Record<string, unknown> }>("train", `n${n}`, { n, backend: BACKEND, rounds: measured.length, ...split, ...shares });
      const rows = [1, 2, 4].flatMap((k) => {
        const r = (results as Record<string, Split & { n: number } | undefined>)[`n${k}`];
        if (r === undefined) return [];
        const cell = (key: keyof Split): string => `${r[key].toFixed(1)} (${((r[key] / r.roundMs) * 100).toFixed(0)}%)`;
        return [[String(k), r.roundMs.toFixed(1), cell("computeMs"), cell("readbackMs"), cell("allReduceMs"), cell("updateMs"), cell("uploadMs"), cell("otherMs")]];
      });
      console.log(`\n${table(["N", "round ms", "compute", "read-back", "all-reduce", "update", "upload", "other (commit wait)"], rows)}`);
    });
}
