import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { loadSplit, parseManifest, type Dataset, type DatasetManifest, type Split } from "../dataset.ts";

/** Reads and validates `dir/manifest.json`; errors name the file. */
export async function readManifest(dir: string): Promise<DatasetManifest> {
  const path = join(dir, "manifest.json");
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, "utf8"));
  } catch (error) {
    throw new Error(`cannot read dataset manifest ${path}: ${(error as Error).message}`, { cause: error });
  }
  return parseManifest(json);
}

/** Loads one split of a dataset directory (the server evaluates on "test"). */
export async function loadSplitFromDir(dir: string, split: Split, manifest?: DatasetManifest): Promise<Dataset> {
  const resolved = manifest ?? (await readManifest(dir));
  // File names are validated plain names (no "/" or ".."), so join cannot leave `dir`.
  return loadSplit(resolved, split, async (file) => new Uint8Array(await readFile(join(dir, file))));
}
