import { UsageError } from "./errors.ts";

/** The pure part of the image import: sizes, which files are images, and RGBA -> features. */

/** Largest side --size accepts: 1024x1024x3 is already 3 MiB a sample (one per shard). */
export const MAX_IMAGE_SIDE = 1024;
export const IMAGE_FILE = /\.(png|jpe?g)$/i;

/** "HxW" (height first, like inputShape) -> [height, width]. */
export function parseSize(text: string): [number, number] {
  const match = /^(\d+)x(\d+)$/i.exec(text);
  const height = Number(match?.[1]);
  const width = Number(match?.[2]);
  if (match === null || !(height >= 1 && height <= MAX_IMAGE_SIDE && width >= 1 && width <= MAX_IMAGE_SIDE)) {
    throw new UsageError(`--size ${JSON.stringify(text)}: give HEIGHTxWIDTH, each 1..${MAX_IMAGE_SIDE}, e.g. 32x32`);
  }
  return [height, width];
}

export function parseChannels(text: string): 1 | 3 {
  if (text === "1") return 1;
  if (text === "3") return 3;
  throw new UsageError(`--channels ${JSON.stringify(text)}: 1 (grayscale) or 3 (RGB)`);
}

/**
 * Writes one image's pixels, row-major, into `out` (pixels x channels bytes). Alpha is dropped.
 * Grayscale is the ITU-R BT.601 luma, round(0.299 R + 0.587 G + 0.114 B).
 */
export function rgbaToFeatures(rgba: Uint8Array, out: Uint8Array, channels: 1 | 3): void {
  const pixels = rgba.length / 4;
  if (out.length !== pixels * channels) throw new RangeError(`${pixels} pixels need ${pixels * channels} bytes, got ${out.length}`);
  for (let p = 0; p < pixels; p++) {
    const r = rgba[4 * p] as number;
    const g = rgba[4 * p + 1] as number;
    const b = rgba[4 * p + 2] as number;
    if (channels === 1) {
      out[p] = Math.round(0.299 * r + 0.587 * g + 0.114 * b);
    } else {
      out[3 * p] = r;
      out[3 * p + 1] = g;
      out[3 * p + 2] = b;
    }
  }
}
