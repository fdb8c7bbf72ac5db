import { readFile, stat } from "node:fs/promises";
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import { ImportError, MAX_FEATURE_BYTES, fileError, fmt } from "./errors.ts";

const gunzipAsync = promisify(gunzip);
/** Headers beyond the features a raw input file may carry (IDX: at most 24 bytes). */
const HEADER_SLACK = 1024;

/** Reads an input file whole; gzip files (by their magic bytes, not their name) are inflated. */
export async function readInputFile(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    const size = (await stat(path)).size;
    if (size > MAX_FEATURE_BYTES + HEADER_SLACK) throw new ImportError(`${path}: ${fmt(size)} bytes, more than the import limit of ${fmt(MAX_FEATURE_BYTES)}`);
    bytes = await readFile(path);
  } catch (error) {
    throw fileError(error, `cannot read ${path}`);
  }
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) return bytes;
  try {
    return await gunzipAsync(bytes, { maxOutputLength: MAX_FEATURE_BYTES + HEADER_SLACK });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === "ERR_BUFFER_TOO_LARGE" ? `inflates to more than the import limit of ${fmt(MAX_FEATURE_BYTES)} bytes` : `not valid gzip: ${(error as Error).message}`;
    throw new ImportError(`${path}: ${why}`, { cause: error });
  }
}
