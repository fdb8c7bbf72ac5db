import { execFile } from "node:child_process";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { parseJob } from "@crowdtrain/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command } from "./import-support.ts";
import { UsageError } from "../src/node/import/errors.ts";
import { hiddenUnits } from "../src/node/import/job-template.ts";
import { runImport } from "../src/node/import/run.ts";
import type { Samples } from "../src/node/import/split.ts";
import { shuffledOrder } from "../src/node/shuffle.ts";
import { writeDataset } from "../src/node/import/write-dataset.ts";

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
/** One CLI run: a fresh node process compiling the CLI with tsx, on two shared cores. */
const CLI_TIMEOUT_MS = 30_000;

let root = "";
let goodCsv = "";
let lateBadCsv = "";
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "crowdtrain-import-write-"));
  const rows = Array.from({ length: 3000 }, (_, i) => `${i % 17},${(i * 7) % 13},${i % 2 === 0 ? "even" : "odd"}`);
  goodCsv = join(root, "good.csv");
  await writeFile(goodCsv, ["a,b,parity", ...rows].join("\n"));
  // The same data with one bad cell near the end: the import fails long after it started.
  lateBadCsv = join(root, "late-bad.csv");
  await writeFile(lateBadCsv, ["a,b,parity", ...rows.slice(0, 2990), "1,n/a,odd", ...rows.slice(2990)].join("\n"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function snapshot(dir: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) files.set(join(entry.parentPath, entry.name), (await readFile(join(entry.parentPath, entry.name))).toString("base64"));
  }
  return files;
}

describe("writing an imported dataset", () => {
  it("leaves an existing target untouched when a --force import fails late, and leaves no temporary files", async () => {
    const out = join(root, "out-fail");
    await runImport(command(["import", "csv", goodCsv, "--label", "parity", "--name", "keep"]), out);
    const before = await snapshot(out);
    await expect(runImport(command(["import", "csv", lateBadCsv, "--label", "parity", "--name", "keep", "--force", "--seed", "9"]), out)).rejects.toThrow(
      /late-bad\.csv:2992: column "b" holds "n\/a"/,
    );
    expect(await snapshot(out)).toEqual(before);
    expect((await readdir(out)).sort()).toEqual(["keep", "keep.job.json"]);
  });

  it("removes a partly written temporary directory and keeps the old target when writing fails midway", async () => {
    const out = join(root, "out-midway");
    await runImport(command(["import", "csv", goodCsv, "--label", "parity", "--name", "mid"]), out);
    const before = await snapshot(out);
    const train: Samples = { featureBytes: 2, features: new Uint8Array(2 * 300_000), labels: new Uint8Array(300_000) };
    // The test split's samples fail to read: every train shard is on disk by then.
    const test = {
      featureBytes: 2,
      labels: new Uint8Array(10),
      get features(): Uint8Array {
        throw new Error("disk on fire");
      },
    };
    const plan = { train: { samples: train, order: shuffledOrder(300_000, 1) }, test: { samples: test, order: shuffledOrder(10, 2) } };
    const spec = { name: "mid", source: "test", inputShape: [2], classes: 2, featureScale: 1 / 255 };
    await expect(writeDataset(spec, plan, { outDir: out, force: true })).rejects.toThrow("disk on fire");
    expect(await snapshot(out)).toEqual(before);
    expect((await readdir(out)).sort()).toEqual(["mid", "mid.job.json"]);
  });

  it("refuses an existing dataset without --force and replaces it with --force", async () => {
    const out = join(root, "out-force");
    const first = await runImport(command(["import", "csv", goodCsv, "--label", "parity", "--name", "data"]), out);
    await expect(runImport(command(["import", "csv", goodCsv, "--label", "parity", "--name", "data"]), out)).rejects.toThrow(UsageError);
    const second = await runImport(command(["import", "csv", goodCsv, "--label", "parity", "--name", "data", "--force", "--test-fraction", "0.5"]), out);
    expect([first.manifest.test.count, second.manifest.test.count]).toEqual([600, 1500]);
    expect((await readdir(out)).sort()).toEqual(["data", "data.job.json"]);
  });

  it("writes a job template that parseJob accepts, for this dataset", async () => {
    const out = join(root, "out-job");
    const result = await runImport(command(["import", "csv", goodCsv, "--label", "parity", "--name", "parity"]), out);
    const job = parseJob(JSON.parse(await readFile(result.jobFile, "utf8")));
    expect(job).toMatchObject({ dataset: "parity", model: { kind: "mlp", hidden: [128] }, batchSize: 64, epochs: 10, evalEveryRounds: 38 });
    // Large inputs get a narrower first layer (at most about a million weights).
    expect([784, 224 * 224 * 3].map(hiddenUnits)).toEqual([128, 16]);
  });
});

describe("dataset CLI", () => {
  const cli = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, ["--import", "tsx", "packages/training/src/node/dataset-cli.ts", ...args], { cwd: REPO_ROOT });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: unknown; stdout?: string; stderr?: string };
      if (typeof failed.code !== "number") throw error;
      return { code: failed.code, stdout: failed.stdout ?? "", stderr: failed.stderr ?? "" };
    }
  };

  it(
    "exits 2 on a usage error and 1 on bad data, with a message and no stack; prints the serve command on success",
    async () => {
      const out = join(root, "out-cli");
      const usage = await cli("import", "csv", goodCsv, "--label", "parity");
      expect(usage).toMatchObject({ code: 2, stderr: expect.stringContaining("error: import csv needs --name NAME") });
      const bad = await cli("import", "csv", lateBadCsv, "--label", "parity", "--name", "bad", "--out", out);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^error: .*late-bad\.csv:2992: column "b" holds "n\/a", not a number$/m);
      expect(bad.stderr).not.toMatch(/^\s+at /m);
      const ok = await cli("import", "csv", goodCsv, "--label", "parity", "--name", "ok", "--out", out);
      expect(ok.code).toBe(0);
      expect(ok.stdout).toContain(`npm run serve -- --datasets ${out} --job ${join(out, "ok.job.json")}`);
      expect(ok.stdout).toContain('classes (label -> id): "even" -> 0 (1,500 rows), "odd" -> 1 (1,500 rows)');
    },
    3 * CLI_TIMEOUT_MS,
  );
});
