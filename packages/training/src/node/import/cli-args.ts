import { parseArgs } from "node:util";
import { UsageError } from "./errors.ts";
import { parseChannels, parseSize } from "./image-pixels.ts";
import { DEFAULT_SEED, DEFAULT_TEST_FRACTION } from "./split.ts";

/** The dataset CLI's command line, parsed and checked without touching any file. */

export const USAGE = `usage: npm run dataset -- import <kind> <input...> --name NAME [--out DIR] [--force] [--seed N] [--test-fraction F]
  import idx TRAIN_IMAGES TRAIN_LABELS [TEST_IMAGES TEST_LABELS]
                 MNIST-format IDX files of unsigned bytes, optionally gzipped; without test files,
                 --test-fraction of the train files is held out
  import csv FILE --label COLUMN [--no-header] [--delimiter C]
                 numeric feature columns and one label column (a header name, or a 0-based index
                 with --no-header); features are quantised min-max to 0..255 per column
  import images DIR --size HxW [--channels 1|3] [--skip-unreadable]
                 one subfolder of PNG/JPEG files per class, resized to HxW (RGB, or grayscale with --channels 1)
  --name NAME          dataset name: lower-case letters, digits, '.', '_', '-' (what a job's "dataset" names)
  --out DIR            where to write NAME/ and NAME.job.json (default dist/datasets, where the server looks)
  --force              replace an existing dataset and job file of that name
  --seed N             seed of the shuffle (default 0x${DEFAULT_SEED.toString(16)}): same seed, same order everywhere
  --test-fraction F    share of the samples held out for testing, 0 < F < 1 (default ${DEFAULT_TEST_FRACTION})
exit status: 0 done, 1 bad data, 2 bad command line`;

interface Common {
  name: string;
  out: string | undefined;
  force: boolean;
  seed: number;
  testFraction: number;
}

export type ImportCommand =
  | (Common & { kind: "idx"; trainImages: string; trainLabels: string; test?: { images: string; labels: string } })
  | (Common & { kind: "csv"; file: string; label: string; header: boolean; delimiter: string })
  | (Common & { kind: "images"; dir: string; height: number; width: number; channels: 1 | 3; skipUnreadable: boolean });

export type Command = { kind: "help" } | ImportCommand;

const OPTIONS = {
  name: { type: "string" },
  out: { type: "string" },
  force: { type: "boolean" },
  seed: { type: "string" },
  "test-fraction": { type: "string" },
  label: { type: "string" },
  "no-header": { type: "boolean" },
  delimiter: { type: "string" },
  size: { type: "string" },
  channels: { type: "string" },
  "skip-unreadable": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

const COMMON = ["name", "out", "force", "seed", "test-fraction"];
const KIND_OPTIONS: Readonly<Record<string, readonly string[]>> = {
  idx: COMMON,
  csv: [...COMMON, "label", "no-header", "delimiter"],
  images: [...COMMON, "size", "channels", "skip-unreadable"],
};

function parseSeed(text: string): number {
  const value = /^(0x[0-9a-f]+|\d+)$/i.test(text) ? Number(text) : NaN;
  if (!(Number.isSafeInteger(value) && value >= 0 && value <= 0xffffffff)) throw new UsageError(`--seed ${JSON.stringify(text)}: an integer 0..4294967295 (or 0x hex)`);
  return value;
}

function parseFraction(text: string): number {
  const value = Number(text);
  if (text.trim() === "" || !(value > 0 && value < 1)) throw new UsageError(`--test-fraction ${JSON.stringify(text)}: a number between 0 and 1 (exclusive), e.g. 0.2`);
  return value;
}

function parseDelimiter(text: string): string {
  if (text === "tab" || text === "\\t") return "\t";
  if (text.length !== 1 || text === '"' || text === "\n" || text === "\r") throw new UsageError(`--delimiter ${JSON.stringify(text)}: one character (or "tab")`);
  return text;
}

function parseRaw(argv: readonly string[]) {
  try {
    return parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    // parseArgs reports unknown options and missing values with a TypeError; that is the user's, not a bug.
    if ((error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS") === true) throw new UsageError((error as Error).message, { cause: error });
    throw error;
  }
}

export function parseCommand(argv: readonly string[]): Command {
  const { values, positionals } = parseRaw(argv);
  if (values.help === true || positionals[0] === "help") return { kind: "help" };
  const [verb, kind, ...inputs] = positionals;
  if (verb !== "import") throw new UsageError(verb === undefined ? "no command: import <kind> ..." : `unknown command ${JSON.stringify(verb)}: the command is "import"`);
  const allowed = KIND_OPTIONS[kind ?? ""];
  if (kind === undefined || allowed === undefined) throw new UsageError(kind === undefined ? "import needs a kind: idx, csv or images" : `unknown kind ${JSON.stringify(kind)}: idx, csv or images`);
  const stray = Object.keys(values).filter((option) => !allowed.includes(option));
  if (stray.length > 0) throw new UsageError(`import ${kind} takes no ${stray.map((o) => `--${o}`).join(", ")}`);
  if (values.name === undefined) throw new UsageError(`import ${kind} needs --name NAME`);
  const common: Common = {
    name: values.name,
    out: values.out,
    force: values.force === true,
    seed: values.seed === undefined ? DEFAULT_SEED : parseSeed(values.seed),
    testFraction: values["test-fraction"] === undefined ? DEFAULT_TEST_FRACTION : parseFraction(values["test-fraction"]),
  };
  const expectInputs = (counts: number[], what: string): void => {
    if (!counts.includes(inputs.length)) throw new UsageError(`import ${kind} takes ${what}, got ${inputs.length} input${inputs.length === 1 ? "" : "s"}`);
  };
  if (kind === "idx") {
    expectInputs([2, 4], "TRAIN_IMAGES TRAIN_LABELS [TEST_IMAGES TEST_LABELS]");
    const [trainImages = "", trainLabels = "", testImages, testLabels] = inputs;
    if (testImages === undefined || testLabels === undefined) return { ...common, kind, trainImages, trainLabels };
    if (values["test-fraction"] !== undefined) throw new UsageError("--test-fraction holds out test samples; it does not go with test files");
    return { ...common, kind, trainImages, trainLabels, test: { images: testImages, labels: testLabels } };
  }
  if (kind === "csv") {
    expectInputs([1], "one FILE");
    if (values.label === undefined) throw new UsageError("import csv needs --label COLUMN (a header name, or a 0-based index with --no-header)");
    const delimiter = values.delimiter === undefined ? "," : parseDelimiter(values.delimiter);
    return { ...common, kind, file: inputs[0] as string, label: values.label, header: values["no-header"] !== true, delimiter };
  }
  expectInputs([1], "one DIR");
  if (values.size === undefined) throw new UsageError("import images needs --size HxW, e.g. --size 32x32");
  const [height, width] = parseSize(values.size);
  const channels = values.channels === undefined ? 3 : parseChannels(values.channels);
  return { ...common, kind: "images", dir: inputs[0] as string, height, width, channels, skipUnreadable: values["skip-unreadable"] === true };
}
