import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import {
  DatasetError,
  batchTensors,
  decodeShard,
  encodeShard,
  loadSplit,
  parseManifest,
  type DatasetManifest,
} from "../src/index.ts";
import { useCpu } from "./helpers.ts";

beforeAll(useCpu);

const shard = { featureBytes: 3, features: Uint8Array.from([0, 1, 2, 10, 20, 30, 255, 254, 253, 7, 8, 9]), labels: Uint8Array.from([0, 1, 2, 1]) };

describe("shard codec", () => {
  it("round-trips and has the documented layout", () => {
    const bytes = encodeShard(shard);
    expect(bytes.length).toBe(16 + 4 * 3 + 4);
    expect(String.fromCharCode(...bytes.subarray(0, 4))).toBe("CTDS");
    expect(Array.from(bytes.subarray(4, 16))).toEqual([1, 0, 0, 0, 4, 0, 0, 0, 3, 0, 0, 0]);
    const decoded = decodeShard(bytes, { classes: 3, count: 4, featureBytes: 3 });
    expect(decoded.count).toBe(4);
    expect(Array.from(decoded.features)).toEqual(Array.from(shard.features));
    expect(Array.from(decoded.labels)).toEqual(Array.from(shard.labels));
  });

  it("decodes a shard at an odd offset inside a larger buffer", () => {
    const bytes = encodeShard(shard);
    const padded = new Uint8Array(bytes.length + 3);
    padded.set(bytes, 1);
    expect(Array.from(decodeShard(padded.subarray(1, 1 + bytes.length)).labels)).toEqual([0, 1, 2, 1]);
  });

  it("round-trips an empty shard", () => {
    const decoded = decodeShard(encodeShard({ featureBytes: 5, features: new Uint8Array(0), labels: new Uint8Array(0) }));
    expect(decoded.count).toBe(0);
  });

  const corrupt = (edit: (bytes: Uint8Array) => Uint8Array): Uint8Array => edit(encodeShard(shard).slice());
  it.each([
    ["bad magic", corrupt((b) => (b.set([0x50, 0x4b], 0), b)), /bad magic "PKDS"/],
    ["version", corrupt((b) => (b.set([2], 4), b)), /unsupported version 2/],
    ["short header", corrupt((b) => b.subarray(0, 10)), /truncated: 10 bytes/],
    ["truncated body", corrupt((b) => b.subarray(0, b.length - 1)), /truncated: 31 bytes, 4 samples of 3 need 32/],
    ["trailing bytes", corrupt((b) => Uint8Array.from([...b, 0])), /1 unexpected trailing bytes/],
    ["zero featureBytes", corrupt((b) => (b.set([0], 12), b)), /featureBytes is 0/],
  ])("rejects %s", (_name, bytes, message) => {
    expect(() => decodeShard(bytes, { source: "x.ctds" })).toThrow(DatasetError);
    expect(() => decodeShard(bytes, { source: "x.ctds" })).toThrow(message);
  });

  it("rejects a label >= classes and disagreements with the manifest", () => {
    const bytes = encodeShard(shard);
    expect(() => decodeShard(bytes, { classes: 2, source: "a.ctds" })).toThrow("a.ctds: sample 2 has label 2, but there are only 2 classes");
    expect(() => decodeShard(bytes, { count: 5 })).toThrow("holds 4 samples, the manifest says 5");
    expect(() => decodeShard(bytes, { featureBytes: 4 })).toThrow("featureBytes 3, the manifest says 4");
  });

  it("refuses to encode inconsistent arrays", () => {
    expect(() => encodeShard({ featureBytes: 3, features: new Uint8Array(5), labels: new Uint8Array(2) })).toThrow(DatasetError);
  });
});

const manifest: DatasetManifest = {
  format: "crowdtrain-dataset",
  version: 1,
  name: "tiny",
  inputShape: [3],
  classes: 3,
  featureScale: 0.5,
  train: { count: 6, shards: [{ file: "a.ctds", count: 4 }, { file: "b.ctds", count: 2 }] },
  test: { count: 2, shards: [{ file: "t.ctds", count: 2 }] },
};

describe("manifest", () => {
  it("accepts a valid manifest", () => {
    expect(parseManifest(JSON.parse(JSON.stringify(manifest)))).toEqual(manifest);
  });

  it("lists every problem with its path", () => {
    const bad = {
      ...manifest,
      format: "zip",
      classes: 300,
      train: { count: 7, shards: [{ file: "../etc/passwd", count: 7 }] },
      extra: 1,
    };
    let message = "";
    try {
      parseManifest(bad);
    } catch (error) {
      expect(error).toBeInstanceOf(DatasetError);
      message = (error as Error).message;
    }
    expect(message).toMatch(/^invalid dataset manifest:/);
    expect(message).toMatch(/format: /);
    expect(message).toMatch(/classes: /);
    expect(message).toMatch(/train\.shards\.0\.file: a plain file name/);
    expect(message).toMatch(/extra/);
  });

  it("checks shard counts and unique file names", () => {
    expect(() => parseManifest({ ...manifest, test: { count: 3, shards: [{ file: "t.ctds", count: 2 }] } })).toThrow("shard counts must add up to count");
    expect(() => parseManifest({ ...manifest, test: { count: 2, shards: [{ file: "a.ctds", count: 2 }] } })).toThrow("unique");
  });
});

describe("loadSplit and batchTensors", () => {
  const files: Record<string, Uint8Array> = {
    "a.ctds": encodeShard({ featureBytes: 3, features: Uint8Array.from({ length: 12 }, (_, i) => i), labels: Uint8Array.from([0, 1, 2, 0]) }),
    "b.ctds": encodeShard({ featureBytes: 3, features: Uint8Array.from([100, 101, 102, 200, 201, 202]), labels: Uint8Array.from([2, 1]) }),
  };
  const read = async (file: string): Promise<Uint8Array> => {
    const bytes = files[file];
    if (bytes === undefined) throw new Error(`no ${file}`);
    return bytes;
  };

  it("concatenates shards in manifest order", async () => {
    const train = await loadSplit(manifest, "train", read);
    expect(train.count).toBe(6);
    expect(Array.from(train.labels)).toEqual([0, 1, 2, 0, 2, 1]);
    expect(Array.from(train.features.subarray(12))).toEqual([100, 101, 102, 200, 201, 202]);
    expect(train.featureScale).toBe(0.5);
  });

  it("loads an empty split", async () => {
    const empty = await loadSplit({ ...manifest, test: { count: 0, shards: [] } }, "test", read);
    expect(empty).toMatchObject({ count: 0, featureBytes: 3 });
  });

  it("names the shard that disagrees with the manifest", async () => {
    await expect(loadSplit({ ...manifest, classes: 2 }, "train", read)).rejects.toThrow("a.ctds: sample 2 has label 2");
  });

  it("builds scaled features and one-hot labels for the given indices", async () => {
    const train = await loadSplit(manifest, "train", read);
    const before = tf.memory().numTensors;
    const { xs, ys } = batchTensors(train, [5, 0], [3, 1], 3);
    expect(xs.shape).toEqual([2, 3, 1]);
    expect(Array.from(xs.dataSync())).toEqual([100, 100.5, 101, 0, 0.5, 1]);
    expect(Array.from(ys.dataSync())).toEqual([0, 1, 0, 1, 0, 0]);
    tf.dispose([xs, ys]);
    expect(tf.memory().numTensors).toBe(before);
    expect(() => batchTensors(train, [6], [3], 3)).toThrow("sample index 6 is outside 0..5");
    expect(() => batchTensors(train, [0], [4], 3)).toThrow("does not hold 3 features");
    expect(tf.memory().numTensors).toBe(before);
  });
});
