/**
 * The two kinds of expected failure of an import. The CLI prints their message alone (no stack) and
 * exits 2 for a UsageError (fix the command line) or 1 for an ImportError (fix the data); anything
 * else is a bug and keeps its stack.
 */

export class UsageError extends Error {
  override name = "UsageError";
}

export class ImportError extends Error {
  override name = "ImportError";
}

/**
 * Most feature bytes one import may hold (rows x features, or images x H x W x C): everything is
 * kept in memory once, and Node's fs reads at most 2 GiB per file, which bounds IDX inputs anyway.
 */
export const MAX_FEATURE_BYTES = 2 * 1024 ** 3;

/** `n` with thousands separators, for messages. */
export const fmt = (n: number): string => n.toLocaleString("en-US");

/**
 * A failed file operation (no such file, no permission, disk full) as an ImportError saying what
 * was being done; anything else (a bug) is returned as it is, to be rethrown with its stack.
 */
export function fileError(error: unknown, doing: string): unknown {
  if (typeof (error as NodeJS.ErrnoException | undefined)?.syscall !== "string") return error;
  return new ImportError(`${doing}: ${(error as Error).message}`, { cause: error });
}
