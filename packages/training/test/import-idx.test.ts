import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command } from "./import-support.ts";
import { runImport } from "../src/node/import/run.ts";
import { shuffledOrder } from "../src/node/shuffle.ts";
import { loadSplitFromDir, readManifest } from "../src/node/index.ts";

/** An IDX file: 00 00 type ndims, big-endian u32 dims, then the values. */
function idx(dims: number[], values: Uint8Array, type = 0x08): Uint8Array {
  const header = new Uint8Array(4 + 4 * dims.length);
  header.set([0, 0, type, dims.length]);
  const view = new DataView(header.buffer);
  dims.forEach((dim, i) => view.setUint32(4 + 4 * i, dim, false));
  const out = new Uint8Array(header.length + values.length);
  out.set(header);
  out.set(values, header.length);
  return out;
}

/** `count` distinct 3x2 "images" (each starts with its own index) and labels i % 3. */
function images(count: number, salt: number): { pixels: Uint8Array; labels: Uint8Array } {
  const pixels = new Uint8Array(count * 6);
  for (let i = 0; i < pixels.length; i++) pixels[i] = (i * 7 + salt) % 256;
  for (let i = 0; i < count; i++) pixels[i * 6] = i;
  return { pixels, labels: Uint8Array.from({ length: count }, (_, i) => i % 3) };
}

let root = "";
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "crowdtrain-import-idx-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function write(name: string, bytes: Uint8Array): Promise<string> {
  const path = join(root, name);
  await writeFile(path, bytes);
  return path;
}

describe("import idx", () => {
  it("round-trips a train and a test pair (one gzipped), each in its seeded order", async () => {
    const train = images(50, 1);
    const test = images(20, 2);
    const files = [
      await write("train-images.gz", gzipSync(idx([50, 3, 2], train.pixels))),
      await write("train-labels", idx([50], train.labels)),
      await write("test-images", idx([20, 3, 2], test.pixels)),
      await write("test-labels", idx([20], test.labels)),
    ];
    const result = await runImport(command(["import", "idx", ...files, "--name", "tiny", "--seed", "7"]), join(root, "out"));
    const manifest = await readManifest(result.dir);
    expect(manifest).toMatchObject({ name: "tiny", inputShape: [3, 2, 1], classes: 3, featureScale: 1 / 255 });
    for (const [split, original, seed] of [["train", train, 7], ["test", test, (7 ^ 0x9e3779b9) >>> 0]] as const) {
      const loaded = await loadSplitFromDir(result.dir, split, manifest);
      const order = shuffledOrder(original.labels.length, seed);
      expect(loaded.count).toBe(original.labels.length);
      for (let i = 0; i < loaded.count; i++) {
        const from = order[i] as number;
        expect(loaded.labels[i]).toBe(original.labels[from]);
        expect([...loaded.features.subarray(i * 6, i * 6 + 6)]).toEqual([...original.pixels.subarray(from * 6, from * 6 + 6)]);
      }
    }
  });

  it("holds out --test-fraction of a single pair, every sample exactly once", async () => {
    const train = images(40, 3);
    const files = [await write("a-images", idx([40, 6], train.pixels)), await write("a-labels", idx([40], train.labels))];
    const result = await runImport(command(["import", "idx", ...files, "--name", "held", "--test-fraction", "0.25"]), join(root, "out"));
    expect(result.manifest.inputShape).toEqual([6]);
    expect([result.manifest.train.count, result.manifest.test.count]).toEqual([30, 10]);
    const firstBytes: number[] = [];
    for (const split of ["train", "test"] as const) {
      const loaded = await loadSplitFromDir(result.dir, split);
      for (let i = 0; i < loaded.count; i++) {
        const sample = loaded.features[i * 6] as number;
        firstBytes.push(sample);
        expect(loaded.labels[i]).toBe(sample % 3);
      }
    }
    expect(firstBytes.sort((a, b) => a - b)).toEqual(Array.from({ length: 40 }, (_, i) => i));
  });

  it("refuses bad files with the file and the reason", async () => {
    const { pixels, labels } = images(10, 4);
    const good = await write("good-images", idx([10, 3, 2], pixels));
    const goodLabels = await write("good-labels", idx([10], labels));
    const cases: [string, Uint8Array, RegExp][] = [
      ["bad-magic", Uint8Array.of(1, 2, 8, 1, 0, 0, 0, 10), /not an IDX file: it starts with 01 02 08 01/],
      ["floats", idx([10], new Uint8Array(40), 0x0d), /holds float values; only unsigned bytes/],
      ["truncated", idx([12], new Uint8Array(10)), /truncated: dimensions \[12\] need 20 bytes, the file has 18/],
      ["short-count", idx([9], labels.subarray(0, 9)), /holds 10 samples but .*short-count 9 labels/],
      ["two-dim-labels", idx([10, 1], labels), /2 dimensions \[10, 1\]; a labels file has one/],
    ];
    for (const [name, bytes, message] of cases) {
      const bad = await write(name, bytes);
      await expect(runImport(command(["import", "idx", good, bad, "--name", "bad"]), join(root, "out")), name).rejects.toThrow(message);
    }
    const zeros = await write("zeros", idx([10], new Uint8Array(10)));
    await expect(runImport(command(["import", "idx", good, zeros, "--name", "bad"]), join(root, "out"))).rejects.toThrow(/every label is 0/);
    await expect(runImport(command(["import", "idx", good, goodLabels, "--name", "bad"]), join(root, "out"))).resolves.toBeDefined();
  });
});
