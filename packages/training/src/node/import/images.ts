import type { Dirent } from "node:fs";
import { readFile, readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { Jimp } from "jimp";
import { MAX_CLASSES } from "./csv-table.ts";
import { ImportError, MAX_FEATURE_BYTES, fileError, fmt } from "./errors.ts";
import { IMAGE_FILE, rgbaToFeatures } from "./image-pixels.ts";
import { progress, type ProgressSink } from "./progress.ts";
import { holdOut } from "./split.ts";
import type { Imported } from "./write-dataset.ts";

/**
 * Imports a folder of class folders of PNG/JPEG files: each decoded with jimp (pure JS, no native
 * build), resized to HxW, stored as RGB or grayscale bytes (featureScale 1/255). A file that does
 * not decode fails the import, naming it, unless --skip-unreadable, which lists what it skipped.
 */

export const IMAGES_IMPORTER_VERSION = 1;
/** Ignored files named in the summary; the count covers the rest. */
const SUMMARY_IGNORED = 10;

export interface ImagesInput {
  dir: string;
  height: number;
  width: number;
  channels: 1 | 3;
  skipUnreadable: boolean;
  testFraction: number;
  seed: number;
  progress?: ProgressSink;
}

interface Listing {
  classes: string[];
  files: { path: string; label: number }[];
  /** Entries that are neither class folders nor .png/.jpg/.jpeg files (dot files aside). */
  ignored: string[];
}

const byName = (a: Dirent, b: Dirent): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

async function entries(dir: string): Promise<Dirent[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => !e.name.startsWith(".")).sort(byName);
  } catch (error) {
    throw fileError(error, `cannot read the folder ${dir}`);
  }
}

/** "file", "dir" or "other", following symbolic links. */
async function kindOf(dir: string, entry: Dirent): Promise<"file" | "dir" | "other"> {
  let target: Pick<Dirent, "isFile" | "isDirectory"> = entry;
  if (entry.isSymbolicLink()) {
    try {
      target = await stat(join(dir, entry.name));
    } catch (error) {
      throw fileError(error, `${join(dir, entry.name)}: broken link`);
    }
  }
  return target.isFile() ? "file" : target.isDirectory() ? "dir" : "other";
}

async function listImages(dir: string): Promise<Listing> {
  const classes: string[] = [];
  const ignored: string[] = [];
  for (const entry of await entries(dir)) {
    if ((await kindOf(dir, entry)) === "dir") classes.push(entry.name);
    else ignored.push(join(dir, entry.name));
  }
  // Class ids are the folder names in UTF-16 code unit order (sorted above): the same on every machine.
  if (classes.length < 2) throw new ImportError(`${dir}: ${classes.length} class folder${classes.length === 1 ? "" : "s"}; need at least 2 (one subfolder per class, e.g. ${join(dir, "cat")} and ${join(dir, "dog")})`);
  if (classes.length > MAX_CLASSES) throw new ImportError(`${dir}: ${classes.length} class folders, more than ${MAX_CLASSES} (labels are stored as one byte)`);
  const files: Listing["files"] = [];
  for (const [label, name] of classes.entries()) {
    const classDir = join(dir, name);
    const before = files.length;
    for (const entry of await entries(classDir)) {
      const path = join(classDir, entry.name);
      if (IMAGE_FILE.test(entry.name) && (await kindOf(classDir, entry)) === "file") files.push({ path, label });
      else ignored.push(path);
    }
    if (files.length === before) throw new ImportError(`${classDir}: no .png, .jpg or .jpeg files (class ${JSON.stringify(name)} would have no samples)`);
  }
  return { classes, files, ignored };
}

export async function importImages(input: ImagesInput): Promise<Imported> {
  const { dir, height, width, channels } = input;
  const { classes, files, ignored } = await listImages(dir);
  const featureBytes = height * width * channels;
  if (files.length * featureBytes > MAX_FEATURE_BYTES) {
    throw new ImportError(`${fmt(files.length)} images of ${height}x${width}x${channels} are ${fmt(files.length * featureBytes)} bytes, more than the import limit of ${fmt(MAX_FEATURE_BYTES)}: use a smaller --size`);
  }
  const features = new Uint8Array(files.length * featureBytes);
  const labels = new Uint8Array(files.length);
  const perClass = new Array<number>(classes.length).fill(0);
  const skipped: string[] = [];
  const tick = progress(input.progress, `decoding ${basename(dir)}`, "images", files.length);
  let kept = 0;
  for (const [done, { path, label }] of files.entries()) {
    let image: Awaited<ReturnType<typeof Jimp.fromBuffer>>;
    try {
      image = await Jimp.fromBuffer(await readFile(path));
    } catch (error) {
      const why = `${path}: unreadable image (${(error as Error).message})`;
      if (!input.skipUnreadable) throw new ImportError(`${why}; fix or remove it, or pass --skip-unreadable`, { cause: error });
      skipped.push(why);
      continue;
    }
    image.resize({ w: width, h: height });
    rgbaToFeatures(image.bitmap.data, features.subarray(kept * featureBytes, (kept + 1) * featureBytes), channels);
    labels[kept] = label;
    perClass[label] = (perClass[label] as number) + 1;
    kept++;
    tick(done + 1);
  }
  const empty = classes.filter((_, id) => perClass[id] === 0);
  if (empty.length > 0) throw new ImportError(`no readable images in class folder${empty.length === 1 ? "" : "s"} ${empty.map((c) => JSON.stringify(c)).join(", ")}`);

  const mapping = classes.map((name, id) => `${id}=${JSON.stringify(name)}`).join(", ");
  const pixels = channels === 1 ? "grayscale (BT.601 luma)" : "RGB";
  return {
    spec: {
      source:
        `images ${basename(dir)}, classes ${mapping}; resized to ${height}x${width} (jimp default resampling, aspect ratio not kept, EXIF orientation applied), ${pixels}, alpha dropped` +
        `${skipped.length > 0 ? `, ${skipped.length} unreadable skipped` : ""}; test fraction ${input.testFraction}, shuffle mulberry32 seed 0x${input.seed.toString(16)}, importer images ${IMAGES_IMPORTER_VERSION}`,
      inputShape: [height, width, channels],
      classes: classes.length,
      featureScale: 1 / 255,
    },
    plan: holdOut({ featureBytes, features: features.subarray(0, kept * featureBytes), labels: labels.subarray(0, kept) }, input.testFraction, input.seed),
    summary: [
      `${fmt(kept)} images, ${height}x${width}x${channels}`,
      `classes (folder -> id): ${classes.map((name, id) => `${JSON.stringify(name)} -> ${id} (${fmt(perClass[id] ?? 0)} images)`).join(", ")}`,
      ...(skipped.length > 0 ? [`skipped ${skipped.length} unreadable file${skipped.length === 1 ? "" : "s"}:`, ...skipped.map((s) => `  ${s}`)] : []),
      ...(ignored.length > 0
        ? [`ignored ${ignored.length} entr${ignored.length === 1 ? "y" : "ies"} that are not class folders or .png/.jpg/.jpeg files: ${ignored.slice(0, SUMMARY_IGNORED).join(", ")}${ignored.length > SUMMARY_IGNORED ? ", ..." : ""}`]
        : []),
    ],
  };
}
