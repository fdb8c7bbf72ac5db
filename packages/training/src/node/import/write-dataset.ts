import { rmSync } from "node:fs";
import { lstat, mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { featureBytesOf, parseManifest, type DatasetManifest, type Split } from "../../dataset.ts";
import { UsageError, fileError } from "./errors.ts";
import { jobTemplate } from "./job-template.ts";
import { progress, type ProgressSink } from "./progress.ts";
import { gatherShard, planShards } from "./shards.ts";
import type { SplitPlan } from "./split.ts";

/**
 * Writes an imported dataset so that nothing is ever half-written: shards, then the manifest, go to
 * a temporary directory beside the target, which is renamed into place at the end (a rename within
 * one directory is atomic). A failure anywhere removes the temporary directory and leaves an existing
 * target as it was.
 */

/** The manifest's (and the job's `dataset`) rule for names. */
export const NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,63}$/;

export interface DatasetSpec {
  name: string;
  source: string;
  inputShape: number[];
  classes: number;
  featureScale: number;
}

/** What an importer hands over: everything but the name, the samples split, and lines for the summary. */
export interface Imported {
  spec: Omit<DatasetSpec, "name">;
  plan: SplitPlan;
  /** For the CLI's summary (class mapping, ranges, skipped files). */
  summary: string[];
}

export interface WriteOptions {
  outDir: string;
  force: boolean;
  progress?: ProgressSink;
}

export interface WriteResult {
  dir: string;
  jobFile: string;
  manifest: DatasetManifest;
  job: Record<string, unknown>;
  /** Bytes of all shards together. */
  bytes: number;
}

export function targetPaths(outDir: string, name: string): { dir: string; jobFile: string } {
  return { dir: join(outDir, name), jobFile: join(outDir, `${name}.job.json`) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw error;
  }
}

/** Refuses a bad name, or an existing dataset or job file without --force. Call it before a long import too. */
export async function checkTarget(outDir: string, name: string, force: boolean): Promise<void> {
  if (!NAME_PATTERN.test(name)) throw new UsageError(`--name ${JSON.stringify(name)}: use lower-case letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit)`);
  if (force) return;
  for (const path of Object.values(targetPaths(outDir, name))) {
    if (await exists(path)) throw new UsageError(`${path} already exists: pass --force to replace it, or choose another --name`);
  }
}

// Temporary paths of imports in flight, so an interrupted CLI can remove them (removePendingSync).
const pending = new Set<string>();

/** Removes what imports in flight have written so far; the CLI calls it on SIGINT/SIGTERM. */
export function removePendingSync(): void {
  for (const path of pending) rmSync(path, { recursive: true, force: true });
  pending.clear();
}

function buildManifest(spec: DatasetSpec, plan: SplitPlan): DatasetManifest {
  const featureBytes = featureBytesOf(spec.inputShape);
  const split = (which: Split) => {
    const count = plan[which].order.length;
    if (plan[which].samples.featureBytes !== featureBytes) throw new Error(`${which} samples have ${plan[which].samples.featureBytes} features, inputShape says ${featureBytes}`);
    return { count, shards: planShards(which, count, featureBytes) };
  };
  const { name, source, inputShape, classes, featureScale } = spec;
  // Validated like any reader would: an importer bug must not write a manifest the server refuses.
  return parseManifest({ format: "crowdtrain-dataset", version: 1, name, source, inputShape, classes, featureScale, train: split("train"), test: split("test") });
}

/** Moves `from` onto `to`; an existing `to` (allowed by --force) is set aside first and restored on failure. */
async function replace(from: string, to: string, aside: string): Promise<void> {
  const hadTarget = await exists(to);
  if (hadTarget) await rename(to, aside);
  try {
    await rename(from, to);
  } catch (error) {
    if (hadTarget) await rename(aside, to);
    throw error;
  }
  if (hadTarget) await rm(aside, { recursive: true, force: true });
}

/** Writes `<outDir>/<name>/` (shards, manifest last) and `<outDir>/<name>.job.json`. */
export async function writeDataset(spec: DatasetSpec, plan: SplitPlan, options: WriteOptions): Promise<WriteResult> {
  const { outDir, force } = options;
  await checkTarget(outDir, spec.name, force);
  const manifest = buildManifest(spec, plan);
  const job = jobTemplate(manifest);
  const { dir, jobFile } = targetPaths(outDir, spec.name);
  try {
    await mkdir(outDir, { recursive: true });
  } catch (error) {
    throw fileError(error, `cannot create ${outDir}`);
  }
  // Dot names: never a valid dataset name, so a server can never pick up a half-written directory.
  const stamp = `${process.pid}-${Date.now().toString(36)}`;
  const tmpDir = join(outDir, `.${spec.name}.tmp-${stamp}`);
  const tmpJob = join(outDir, `.${spec.name}.job.json.tmp-${stamp}`);
  pending.add(tmpDir).add(tmpJob);
  try {
    await mkdir(tmpDir);
    const total = manifest.train.count + manifest.test.count;
    const tick = progress(options.progress, `writing ${spec.name}`, "samples", total);
    let bytes = 0;
    let written = 0;
    for (const which of ["train", "test"] as const) {
      let start = 0;
      for (const shard of manifest[which].shards) {
        const encoded = gatherShard(plan[which], start, shard.count);
        await writeFile(join(tmpDir, shard.file), encoded);
        bytes += encoded.length;
        start += shard.count;
        written += shard.count;
        tick(written);
      }
    }
    // The manifest last: its presence means the directory is complete.
    await writeFile(join(tmpDir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
    await writeFile(tmpJob, `${JSON.stringify(job, null, 2)}\n`);
    // The target may have appeared during a long import: check again just before the swap.
    await checkTarget(outDir, spec.name, force);
    await replace(tmpDir, dir, join(outDir, `.${spec.name}.old-${stamp}`));
    await replace(tmpJob, jobFile, join(outDir, `.${spec.name}.job.json.old-${stamp}`));
    return { dir, jobFile, manifest, job, bytes };
  } catch (error) {
    throw fileError(error, `cannot write ${dir}`);
  } finally {
    // After a successful swap these paths no longer exist; after a failure they hold partial output.
    await rm(tmpDir, { recursive: true, force: true });
    await rm(tmpJob, { force: true });
    pending.delete(tmpDir);
    pending.delete(tmpJob);
  }
}
