import { resolve } from "node:path";
import type { ImportCommand } from "./cli-args.ts";
import { importCsv } from "./csv.ts";
import { importIdx } from "./idx.ts";
import { importImages } from "./images.ts";
import type { ProgressSink } from "./progress.ts";
import { checkTarget, writeDataset, type Imported, type WriteResult } from "./write-dataset.ts";

/** Runs one parsed import command: read and check the input, then write the dataset and its job. */

export interface ImportResult extends WriteResult {
  summary: string[];
  ms: number;
}

function readInput(command: ImportCommand, progress: ProgressSink | undefined): Promise<Imported> {
  const { seed, testFraction } = command;
  switch (command.kind) {
    case "idx":
      return importIdx({ trainImages: command.trainImages, trainLabels: command.trainLabels, test: command.test, seed, testFraction });
    case "csv":
      return importCsv({ file: command.file, label: command.label, header: command.header, delimiter: command.delimiter, seed, testFraction, progress });
    case "images": {
      const { dir, height, width, channels, skipUnreadable } = command;
      return importImages({ dir, height, width, channels, skipUnreadable, seed, testFraction, progress });
    }
  }
}

/** `defaultOut` is used when the command has no --out. */
export async function runImport(command: ImportCommand, defaultOut: string, progress?: ProgressSink): Promise<ImportResult> {
  const started = performance.now();
  const outDir = resolve(command.out ?? defaultOut);
  // Refuse an existing target before a long import, not after it.
  await checkTarget(outDir, command.name, command.force);
  const imported = await readInput(command, progress);
  const written = await writeDataset({ name: command.name, ...imported.spec }, imported.plan, { outDir, force: command.force, progress });
  return { ...written, summary: imported.summary, ms: Math.round(performance.now() - started) };
}
