import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Jimp } from "jimp";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command } from "./import-support.ts";
import { rgbaToFeatures } from "../src/node/import/image-pixels.ts";
import { runImport } from "../src/node/import/run.ts";
import { loadSplitFromDir } from "../src/node/index.ts";

const RED = 0xff0000ff;
const BLUE = 0x0000ffff;

let root = "";
let photos = "";
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "crowdtrain-import-images-"));
  // Two classes of solid-colour images of assorted sizes and both formats.
  photos = join(root, "photos");
  for (const [label, color] of [["cat", RED], ["dog", BLUE]] as const) {
    await mkdir(join(photos, label), { recursive: true });
    for (let i = 0; i < 5; i++) {
      const image = new Jimp({ width: 5 + i, height: 4, color });
      const png = i % 2 === 0;
      await writeFile(join(photos, label, `${i}.${png ? "png" : "jpg"}`), await image.getBuffer(png ? "image/png" : "image/jpeg"));
    }
  }
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("import images", () => {
  it("converts RGBA to RGB or BT.601 grayscale", () => {
    const rgba = Uint8Array.of(255, 0, 0, 255, 0, 0, 255, 0, 10, 20, 30, 128);
    const rgb = new Uint8Array(9);
    rgbaToFeatures(rgba, rgb, 3);
    expect([...rgb]).toEqual([255, 0, 0, 0, 0, 255, 10, 20, 30]);
    const gray = new Uint8Array(3);
    rgbaToFeatures(rgba, gray, 1);
    expect([...gray]).toEqual([76, 29, 18]);
  });

  it("imports one folder per class (sorted names are class ids), resized, RGB", async () => {
    const result = await runImport(command(["import", "images", photos, "--name", "pets", "--size", "2x3"]), join(root, "out"));
    expect(result.manifest).toMatchObject({ inputShape: [2, 3, 3], classes: 2, featureScale: 1 / 255 });
    expect(result.manifest.train.count + result.manifest.test.count).toBe(10);
    expect(result.manifest.source).toContain('classes 0="cat", 1="dog"');
    for (const split of ["train", "test"] as const) {
      const data = await loadSplitFromDir(result.dir, split);
      for (let i = 0; i < data.count; i++) {
        const pixel = [...data.features.subarray(i * 18, i * 18 + 3)];
        // JPEG is lossy: near the colour, not equal to it.
        const expected = data.labels[i] === 0 ? [255, 0, 0] : [0, 0, 255];
        pixel.forEach((value, c) => expect(Math.abs(value - (expected[c] as number))).toBeLessThan(8));
      }
    }
  });

  it("makes grayscale samples with --channels 1", async () => {
    const result = await runImport(command(["import", "images", photos, "--name", "pets-gray", "--size", "4x4", "--channels", "1"]), join(root, "out"));
    expect(result.manifest.inputShape).toEqual([4, 4, 1]);
    const data = await loadSplitFromDir(result.dir, "train");
    for (let i = 0; i < data.count; i++) expect(Math.abs((data.features[i * 16] as number) - (data.labels[i] === 0 ? 76 : 29))).toBeLessThan(8);
  });

  it("fails on an unreadable image, naming it, unless --skip-unreadable, which lists it", async () => {
    const broken = join(photos, "dog", "broken.png");
    await writeFile(broken, "this is not a PNG");
    try {
      const args = ["import", "images", photos, "--name", "pets-broken", "--size", "2x2"];
      await expect(runImport(command(args), join(root, "out"))).rejects.toThrow(`${broken}: unreadable image`);
      const result = await runImport(command([...args, "--skip-unreadable"]), join(root, "out"));
      expect(result.manifest.train.count + result.manifest.test.count).toBe(10);
      expect(result.summary.join("\n")).toContain(`skipped 1 unreadable file:\n  ${broken}: unreadable image`);
    } finally {
      await rm(broken);
    }
  });

  it("refuses fewer than two class folders and an empty class", async () => {
    const one = join(root, "one");
    await mkdir(join(one, "only"), { recursive: true });
    await expect(runImport(command(["import", "images", one, "--name", "x", "--size", "2x2"]), join(root, "out"))).rejects.toThrow(/1 class folder; need at least 2/);
    await mkdir(join(one, "empty"));
    await writeFile(join(one, "only", "a.png"), await new Jimp({ width: 2, height: 2, color: RED }).getBuffer("image/png"));
    await expect(runImport(command(["import", "images", one, "--name", "x", "--size", "2x2"]), join(root, "out"))).rejects.toThrow(/empty: no \.png, \.jpg or \.jpeg files/);
  });
});
