/**
 * Imports your own data as a Crowdtrain dataset (DATASETS.md, "Importing your own data"):
 *   npm run dataset -- import idx|csv|images <input...> --name NAME [--out DIR] [options]
 * Expected failures print one message, no stack: exit 2 for the command line, 1 for the data.
 */
import { dirname, join } from "node:path";
import { USAGE, parseCommand } from "./import/cli-args.ts";
import { ImportError, UsageError } from "./import/errors.ts";
import { runImport, type ImportResult } from "./import/run.ts";
import { removePendingSync } from "./import/write-dataset.ts";

/** Where the server looks when it has no --datasets (apps/server/src/cli/flags.ts). */
const DEFAULT_OUT = join(import.meta.dirname, "../../../../dist/datasets");

/** A path as a shell word, so the printed command can be pasted as it is. */
const shellWord = (text: string): string => (/^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`);

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  return bytes < 1024 ** 2 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

function report(result: ImportResult): void {
  const { manifest, job } = result;
  const shards = (n: number): string => `${n} shard${n === 1 ? "" : "s"}`;
  console.log(
    `wrote ${result.dir}: train ${manifest.train.count} (${shards(manifest.train.shards.length)}), test ${manifest.test.count} ` +
      `(${shards(manifest.test.shards.length)}), inputShape [${manifest.inputShape.join(", ")}], ${manifest.classes} classes, ${size(result.bytes)} in ${result.ms} ms`,
  );
  for (const line of result.summary) console.log(`  ${line}`);
  console.log(`wrote job template ${result.jobFile}: ${JSON.stringify(job.model)}, batch ${String(job.batchSize)}, ${String(job.epochs)} epochs; edit it to taste`);
  console.log("start a server on it:");
  console.log(`  npm run serve -- --datasets ${shellWord(dirname(result.dir))} --job ${shellWord(result.jobFile)}`);
}

async function main(argv: readonly string[]): Promise<void> {
  // `npm run dataset` runs in the repository root; relative paths are meant from where the user typed it.
  const typedIn = process.env.npm_lifecycle_event === "dataset" ? process.env.INIT_CWD : undefined;
  if (typedIn !== undefined && typedIn !== "") process.chdir(typedIn);
  const command = parseCommand(argv);
  if (command.kind === "help") {
    console.log(USAGE);
    return;
  }
  // Ctrl-C mid-import: remove the temporary directory; the target was never touched.
  for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
    process.once(signal, () => {
      removePendingSync();
      process.exit(code);
    });
  }
  report(await runImport(command, DEFAULT_OUT, (line) => console.error(line)));
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    console.error(`error: ${error.message}\n(npm run dataset -- --help shows the usage)`);
    process.exitCode = 2;
  } else if (error instanceof ImportError) {
    console.error(`error: ${error.message}`);
    process.exitCode = 1;
  } else {
    throw error;
  }
}
