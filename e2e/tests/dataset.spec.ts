// "Your own data": a CSV imported with the dataset CLI trains in two tabs like MNIST does.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { mulberry32 } from "@crowdtrain/protocol";
import { expect, test } from "../fixtures.ts";
import { fetchStatus, latestAccuracy, type Status } from "../support/status.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../..");
/** The import CLI: a fresh node compiling it with tsx, two passes over 600 rows. */
const IMPORT_TIMEOUT_MS = 30_000;
/** From the clicks to the final evaluation: two CPU tabs, an 8-128-3 MLP, 6 rounds (about 10 s measured). */
const TRAIN_TIMEOUT_MS = 60_000;
/** Starting our server and loading two worker pages (about 15 s measured on two shared cores). */
const SETUP_TIMEOUT_MS = 60_000;
const POLL = { intervals: [500, 1_000, 2_000] };

const CLASSES = ["alpha", "beta", "gamma"];
const FEATURES = 8;
const ROWS = 600;
const NAME = "blobs";

/** Three well-separated blobs: class k sits at 6 on every feature j with j % 3 = k, else 0; noise in [-1, 1]. */
function blobsCsv(seed: number): string {
  const random = mulberry32(seed);
  const header = [...Array.from({ length: FEATURES }, (_, j) => `f${j}`), "kind"].join(",");
  const rows = Array.from({ length: ROWS }, (_, i) => {
    const k = i % CLASSES.length;
    const features = Array.from({ length: FEATURES }, (_, j) => ((j % 3 === k ? 6 : 0) + random() + random() - 1).toFixed(4));
    return [...features, CLASSES[k]].join(",");
  });
  return `${header}\n${rows.join("\n")}\n`;
}

/** Finished, and the evaluation of the final round is in. */
const finished = (status: Status): boolean => status.status === "done" && status.accuracy.at(-1)?.round === status.round;

test("a CSV imported with `npm run dataset` trains in two CPU tabs to well above chance", async ({ launchServer, openWorkers }) => {
  test.setTimeout(IMPORT_TIMEOUT_MS + SETUP_TIMEOUT_MS + TRAIN_TIMEOUT_MS);
  const tmp = await mkdtemp(join(tmpdir(), "crowdtrain-e2e-dataset-"));
  try {
    const csv = join(tmp, "blobs.csv");
    await writeFile(csv, blobsCsv(42));
    const datasets = join(tmp, "datasets");
    const cli = ["--import", "tsx", "packages/training/src/node/dataset-cli.ts", "import", "csv", csv, "--label", "kind", "--name", NAME, "--out", datasets];
    const { stdout } = await promisify(execFile)(process.execPath, cli, { cwd: REPO_ROOT, timeout: IMPORT_TIMEOUT_MS });
    const jobFile = join(datasets, `${NAME}.job.json`);
    expect(stdout).toContain(`npm run serve -- --datasets ${datasets} --job ${jobFile}`);

    // The template trains for 10 epochs at Adam's usual 0.001; a test wants a few quick rounds instead.
    const template = JSON.parse(await readFile(jobFile, "utf8")) as Record<string, unknown>;
    const quick = join(tmp, "quick.job.json");
    await writeFile(quick, JSON.stringify({ ...template, rounds: 6, evalEveryRounds: 3, optimizer: { kind: "adam", learningRate: 0.02 } }));

    const server = await launchServer(["--datasets", datasets, "--job", quick, "--min-workers", "2"]);
    const pages = await openWorkers(2, "/?backends=cpu", server);
    for (const page of pages) await page.click("#start");
    await expect.poll(async () => finished(await fetchStatus(server.url)), { timeout: TRAIN_TIMEOUT_MS, ...POLL }).toBe(true);
    const status = await fetchStatus(server.url);
    expect(status.job.dataset).toBe(NAME);
    expect(status.round).toBe(6);
    expect(latestAccuracy(status)).toBeGreaterThanOrEqual(0.8);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
});
