import { mkdtemp, readFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildMnistDataset, loadSplitFromDir, readManifest } from "../src/node/index.ts";

let root = "";
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "crowdtrain-mnist-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("buildMnistDataset", () => {
  it("writes 8,000 train and 2,000 test digits, every class in both, identically twice", async () => {
    const a = await buildMnistDataset(join(root, "a"));
    const b = await buildMnistDataset(join(root, "b"));
    expect(a.rebuilt && b.rebuilt).toBe(true);

    const manifest = await readManifest(join(root, "a"));
    expect(manifest.train.count).toBe(8000);
    expect(manifest.test.count).toBe(2000);
    expect(manifest.inputShape).toEqual([28, 28, 1]);
    expect(Math.max(...[...manifest.train.shards, ...manifest.test.shards].map((s) => s.count))).toBeLessThanOrEqual(2000);

    for (const split of ["train", "test"] as const) {
      const data = await loadSplitFromDir(join(root, "a"), split, manifest);
      expect(new Set(data.labels).size).toBe(10);
      // Shuffled, not grouped by digit: the first 100 samples already hold most classes.
      expect(new Set(data.labels.subarray(0, 100)).size).toBeGreaterThanOrEqual(8);
      expect(data.features.reduce((max, x) => Math.max(max, x), 0)).toBe(255);
    }

    for (const file of ["manifest.json", ...a.files.map((f) => f.file)]) {
      const [x, y] = await Promise.all([readFile(join(root, "a", file)), readFile(join(root, "b", file))]);
      expect(x.equals(y), file).toBe(true);
    }
  });

  it("skips an up-to-date directory and rebuilds a damaged one", async () => {
    const dir = join(root, "a");
    expect((await buildMnistDataset(dir)).rebuilt).toBe(false);
    await truncate(join(dir, "test-000.ctds"), 100);
    expect((await buildMnistDataset(dir)).rebuilt).toBe(true);
    expect((await loadSplitFromDir(dir, "test")).count).toBe(2000);
  });
});
