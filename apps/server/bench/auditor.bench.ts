// How long a spot check holds the server's thread (npm run bench:auditor): the Auditor replays a
// DiLoCo lease of the default job's model (mnist-mlp) at H inner steps of 64 samples on made-up
// MNIST-shaped data, while a 5 ms timer measures the longest gap between its ticks, which is the
// longest time no worker message could have been handled. Prints the figures for each H.
import * as tf from "@tensorflow/tfjs";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { parseJob } from "@crowdtrain/protocol";
import { buildModel, parseManifest, readWeights, type Dataset } from "@crowdtrain/training";
import { table } from "../../../e2e/bench/report.ts";
import { DEFAULT_JOB_FILE } from "../src/training/job-file.ts";
import { Auditor } from "../src/training/auditor.ts";

const STEP_SAMPLES = 64;
const TICK_MS = 5;
const stepsList = (process.env.BENCH_AUDIT_STEPS ?? "8,64").split(",").map(Number);
if (stepsList.some((h) => !Number.isInteger(h) || h < 1)) throw new Error(`BENCH_AUDIT_STEPS must be positive integers separated by commas, got "${process.env.BENCH_AUDIT_STEPS}"`);

await tf.setBackend("cpu");
const base: unknown = JSON.parse(readFileSync(DEFAULT_JOB_FILE, "utf8"));
const rows: string[][] = [];
for (const steps of stepsList) {
  const count = steps * STEP_SAMPLES;
  const job = parseJob({ ...(base as object), algorithm: { kind: "diloco", innerSteps: steps }, batchSize: count });
  const manifest = parseManifest({ format: "crowdtrain-dataset", version: 1, name: "mnist", inputShape: [28, 28, 1], classes: 10, featureScale: 1 / 255, train: { count, shards: [{ file: "train", count }] }, test: { count: 0, shards: [] } });
  const train: Dataset = { count, featureBytes: 784, featureScale: 1 / 255, features: new Uint8Array(count * 784).map((_, k) => (k * 37) % 256), labels: new Uint8Array(count).map((_, k) => k % 10) };
  const auditor = new Auditor(job, manifest, async () => train);
  const model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
  const start = readWeights(model);
  model.dispose();
  const lease = Array.from({ length: count }, (_, k) => k);
  await auditor.recompute(start, lease.slice(0, STEP_SAMPLES)); // warm-up: the model and kernels
  let last = performance.now();
  let longestGap = 0;
  const ticker = setInterval(() => {
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
  }, TICK_MS);
  const started = performance.now();
  try {
    await auditor.recompute(start, lease);
    const ms = performance.now() - started;
    // One more tick after the replay, so a block that lasted to its end is measured too.
    await new Promise((done) => setTimeout(done, 4 * TICK_MS));
    rows.push([String(steps), String(count), ms.toFixed(0), longestGap.toFixed(0), (ms / steps).toFixed(0)]);
  } finally {
    clearInterval(ticker);
    await auditor.close();
  }
}
console.log(table(["inner steps H", "lease samples", "replay ms", "longest thread hold ms", "ms per step"], rows));
