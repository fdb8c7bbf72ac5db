import * as tf from "@tensorflow/tfjs";
import * as v from "valibot";
import { shapeElements } from "./layers.ts";

/**
 * The dataset format of DATASETS.md: a manifest.json plus binary shards. Decoding is strict (exact
 * lengths, labels below `classes`) because shards come over HTTP and from disk: a bad file must be
 * a clear error naming the problem, never garbage fed to training.
 */

export const SHARD_MAGIC = "CTDS";
export const SHARD_VERSION = 1;
export const SHARD_HEADER_BYTES = 16;

export class DatasetError extends Error {
  override name = "DatasetError";
}

/** One decoded shard. `features` is count*featureBytes uint8, sample-major; `labels` is count uint8. */
export interface Shard {
  count: number;
  featureBytes: number;
  features: Uint8Array;
  labels: Uint8Array;
}

/** Samples of one split, shards concatenated in manifest order. `featureScale` maps a uint8 feature to its float. */
export interface Dataset {
  count: number;
  featureBytes: number;
  featureScale: number;
  features: Uint8Array;
  labels: Uint8Array;
}

export function encodeShard(shard: Omit<Shard, "count">): Uint8Array {
  const { featureBytes, features, labels } = shard;
  const count = labels.length;
  if (!Number.isInteger(featureBytes) || featureBytes < 1) throw new DatasetError(`featureBytes must be a positive integer, got ${featureBytes}`);
  if (features.length !== count * featureBytes) {
    throw new DatasetError(`features has ${features.length} bytes, expected ${count} samples x ${featureBytes}`);
  }
  const out = new Uint8Array(SHARD_HEADER_BYTES + features.length + count);
  out.set(new TextEncoder().encode(SHARD_MAGIC), 0);
  const header = new DataView(out.buffer);
  header.setUint32(4, SHARD_VERSION, true);
  header.setUint32(8, count, true);
  header.setUint32(12, featureBytes, true);
  out.set(features, SHARD_HEADER_BYTES);
  out.set(labels, SHARD_HEADER_BYTES + features.length);
  return out;
}

export interface ShardExpectations {
  /** Name used in error messages (a file name or URL). */
  source?: string;
  count?: number;
  featureBytes?: number;
  /** Every label must be below this. */
  classes?: number;
}

/** Decodes a shard without copying: the returned arrays are views into `bytes`. */
export function decodeShard(bytes: Uint8Array, expect: ShardExpectations = {}): Shard {
  const where = expect.source ?? "shard";
  const fail = (problem: string): never => {
    throw new DatasetError(`${where}: ${problem}`);
  };
  if (bytes.length < SHARD_HEADER_BYTES) fail(`truncated: ${bytes.length} bytes, the header alone is ${SHARD_HEADER_BYTES}`);
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== SHARD_MAGIC) fail(`bad magic ${JSON.stringify(magic)}, expected ${JSON.stringify(SHARD_MAGIC)} (not a shard file?)`);
  const header = new DataView(bytes.buffer, bytes.byteOffset, SHARD_HEADER_BYTES);
  const version = header.getUint32(4, true);
  const count = header.getUint32(8, true);
  const featureBytes = header.getUint32(12, true);
  if (version !== SHARD_VERSION) fail(`unsupported version ${version}, this reader knows ${SHARD_VERSION}`);
  if (featureBytes === 0) fail("featureBytes is 0");
  if (expect.featureBytes !== undefined && featureBytes !== expect.featureBytes) {
    fail(`featureBytes ${featureBytes}, the manifest says ${expect.featureBytes}`);
  }
  if (expect.count !== undefined && count !== expect.count) fail(`holds ${count} samples, the manifest says ${expect.count}`);
  const expected = SHARD_HEADER_BYTES + count * (featureBytes + 1);
  if (bytes.length < expected) fail(`truncated: ${bytes.length} bytes, ${count} samples of ${featureBytes} need ${expected}`);
  if (bytes.length > expected) fail(`${bytes.length - expected} unexpected trailing bytes`);
  const featuresEnd = SHARD_HEADER_BYTES + count * featureBytes;
  const labels = bytes.subarray(featuresEnd, expected);
  if (expect.classes !== undefined) {
    const classes = expect.classes;
    const bad = labels.findIndex((label) => label >= classes);
    if (bad >= 0) fail(`sample ${bad} has label ${labels[bad]}, but there are only ${classes} classes`);
  }
  return { count, featureBytes, features: bytes.subarray(SHARD_HEADER_BYTES, featuresEnd), labels };
}

const PositiveInt = v.pipe(v.number(), v.integer(), v.minValue(1));
const Count = v.pipe(v.number(), v.integer(), v.minValue(0));
// Shard files are served over HTTP and opened on disk by name: no paths, no "..".
const FileName = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/, "a plain file name (letters, digits, '.', '_', '-')"));

const SplitSchema = v.pipe(
  v.strictObject({
    count: Count,
    shards: v.array(v.strictObject({ file: FileName, count: Count })),
  }),
  v.check((split) => split.shards.reduce((sum, shard) => sum + shard.count, 0) === split.count, "shard counts must add up to count"),
);

export const ManifestSchema = v.pipe(
  v.strictObject({
    format: v.literal("crowdtrain-dataset"),
    version: v.literal(1),
    name: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "lower-case letters, digits, '.', '_' or '-', at most 64")),
    /** Where the data came from and how it was built; a change forces a rebuild. */
    source: v.optional(v.string()),
    inputShape: v.pipe(v.array(PositiveInt), v.minLength(1), v.maxLength(4)),
    // Labels are stored as uint8.
    classes: v.pipe(v.number(), v.integer(), v.minValue(2), v.maxValue(256)),
    featureScale: v.pipe(v.number(), v.gtValue(0), v.finite()),
    train: SplitSchema,
    test: SplitSchema,
  }),
  v.check((m) => m.train.count > 0, "train must hold at least one sample"),
  v.check((m) => {
    const files = [...m.train.shards, ...m.test.shards].map((shard) => shard.file);
    return new Set(files).size === files.length;
  }, "shard file names must be unique"),
);

export type DatasetManifest = v.InferOutput<typeof ManifestSchema>;
export type Split = "train" | "test";

/** Parses an untrusted manifest (already JSON-decoded); the error lists every problem with its path. */
export function parseManifest(input: unknown): DatasetManifest {
  const result = v.safeParse(ManifestSchema, input);
  if (result.success) return result.output;
  const problems = result.issues.map((issue) => {
    const path = v.getDotPath(issue);
    return path === null ? issue.message : `${path}: ${issue.message}`;
  });
  throw new DatasetError(`invalid dataset manifest:\n  ${problems.join("\n  ")}`);
}

/** Bytes of one sample's features: one byte per element of the input shape. */
export function featureBytesOf(inputShape: readonly number[]): number {
  return shapeElements(inputShape);
}

/** Concatenates decoded shards into one split (one copy, so the shard buffers can be dropped). */
export function concatShards(shards: readonly Shard[], featureBytes: number, featureScale: number): Dataset {
  const count = shards.reduce((sum, shard) => sum + shard.count, 0);
  const features = new Uint8Array(count * featureBytes);
  const labels = new Uint8Array(count);
  let at = 0;
  for (const shard of shards) {
    if (shard.featureBytes !== featureBytes) throw new DatasetError(`a shard has ${shard.featureBytes} bytes per sample, expected ${featureBytes}`);
    features.set(shard.features, at * featureBytes);
    labels.set(shard.labels, at);
    at += shard.count;
  }
  return { count, featureBytes, featureScale, features, labels };
}

/**
 * Loads one split through an injected reader (fetch in the browser, fs on the server), checking each
 * shard against the manifest.
 */
export async function loadSplit(
  manifest: DatasetManifest,
  split: Split,
  readShard: (file: string) => Promise<Uint8Array>,
): Promise<Dataset> {
  const featureBytes = featureBytesOf(manifest.inputShape);
  const shards = await Promise.all(
    manifest[split].shards.map(async (entry) =>
      decodeShard(await readShard(entry.file), { source: entry.file, count: entry.count, featureBytes, classes: manifest.classes }),
    ),
  );
  return concatShards(shards, featureBytes, manifest.featureScale);
}

/**
 * Builds a float32 batch (features times featureScale, shape [n, ...inputShape]) and one-hot labels
 * ([n, classes]) for the given sample indices. The caller owns and disposes both tensors.
 */
export function batchTensors(
  dataset: Dataset,
  indices: ArrayLike<number>,
  inputShape: readonly number[],
  classes: number,
): { xs: tf.Tensor; ys: tf.Tensor2D } {
  const { featureBytes, featureScale, features, labels } = dataset;
  if (featureBytesOf(inputShape) !== featureBytes) {
    throw new DatasetError(`inputShape [${inputShape.join(", ")}] does not hold ${featureBytes} features`);
  }
  const n = indices.length;
  const xs = new Float32Array(n * featureBytes);
  const ys = new Float32Array(n * classes);
  for (let row = 0; row < n; row++) {
    const index = indices[row] as number;
    if (!Number.isInteger(index) || index < 0 || index >= dataset.count) {
      throw new RangeError(`sample index ${index} is outside 0..${dataset.count - 1}`);
    }
    const label = labels[index] as number;
    if (label >= classes) throw new DatasetError(`sample ${index} has label ${label}, but there are only ${classes} classes`);
    const from = index * featureBytes;
    const to = row * featureBytes;
    for (let j = 0; j < featureBytes; j++) xs[to + j] = (features[from + j] as number) * featureScale;
    ys[row * classes + label] = 1;
  }
  return { xs: tf.tensor(xs, [n, ...inputShape], "float32"), ys: tf.tensor2d(ys, [n, classes], "float32") };
}
