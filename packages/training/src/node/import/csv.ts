import { basename } from "node:path";
import { ColumnRanges, MAX_CLASSES, classIds, quantise } from "./csv-table.ts";
import { scanCsv, type CsvOptions } from "./csv-scan.ts";
import { ImportError, MAX_FEATURE_BYTES, fmt } from "./errors.ts";
import { progress, type ProgressSink } from "./progress.ts";
import { holdOut } from "./split.ts";
import type { Imported } from "./write-dataset.ts";

/**
 * Imports a CSV of numeric features and one label column in two streaming passes: the first checks
 * every row and finds each column's range and the labels, the second quantises into uint8 (min-max
 * to 0..255, featureScale 1/255). The ranges and the label mapping go into the manifest's `source`,
 * since a model trained on it needs them to read new data the same way.
 */

export const CSV_IMPORTER_VERSION = 1;
/** Columns listed in the printed summary; all of them are in the manifest's source. */
const SUMMARY_COLUMNS = 12;

export interface CsvInput extends CsvOptions {
  testFraction: number;
  seed: number;
  progress?: ProgressSink;
}

export async function importCsv(input: CsvInput): Promise<Imported> {
  const { file } = input;
  const counts = new Map<string, number>();
  let ranges: ColumnRanges | undefined;
  let rows = 0;
  const checked = progress(input.progress, `${basename(file)} pass 1/2 (checking)`, "rows");
  const layout = await scanCsv(input, (row, layout) => {
    rows++;
    if (rows * layout.featureIndices.length > MAX_FEATURE_BYTES) {
      throw new ImportError(`${file}:${row.line}: more than ${fmt(MAX_FEATURE_BYTES)} feature values, the import limit`);
    }
    ranges ??= new ColumnRanges(row.values.length);
    ranges.add(row.values);
    counts.set(row.label, (counts.get(row.label) ?? 0) + 1);
    if (counts.size > MAX_CLASSES) {
      throw new ImportError(`${file}:${row.line}: label ${JSON.stringify(row.label)} is the ${MAX_CLASSES + 1}th distinct one; at most ${MAX_CLASSES} classes (is --label the right column?)`);
    }
    checked(rows);
  });
  if (rows === 0 || ranges === undefined) throw new ImportError(`${file}: no data rows${input.header ? " after the header" : ""}`);
  const ids = classIds(counts, JSON.stringify(layout.labelName));
  const { min, max } = ranges;

  const featureBytes = layout.featureIndices.length;
  const features = new Uint8Array(rows * featureBytes);
  const labels = new Uint8Array(rows);
  let at = 0;
  const changed = (where: string): never => {
    throw new ImportError(`${where}: the file changed during the import; run it again`);
  };
  const quantised = progress(input.progress, `${basename(file)} pass 2/2 (quantising)`, "rows", rows);
  await scanCsv(input, (row) => {
    const id = ids.get(row.label);
    if (at >= rows || id === undefined) changed(`${file}:${row.line}`);
    for (let j = 0; j < featureBytes; j++) features[at * featureBytes + j] = quantise(row.values[j] as number, min[j] as number, max[j] as number);
    labels[at] = id as number;
    at++;
    quantised(at);
  });
  if (at !== rows) changed(file);

  const classList = [...ids.keys()];
  const mapping = classList.map((label, id) => `${id}=${JSON.stringify(label)}`).join(", ");
  const columnRange = (j: number): string => `${JSON.stringify(layout.featureNames[j])} [${min[j]}, ${max[j]}]`;
  const columnRanges = layout.featureNames.map((_, j) => columnRange(j));
  const constant = layout.featureNames.filter((_, j) => min[j] === max[j]);
  return {
    spec: {
      source:
        `csv ${basename(file)}, label column ${JSON.stringify(layout.labelName)}, classes ${mapping}; ` +
        `features round(255*(x-min)/(max-min)), constant columns 0, [min, max]: ${columnRanges.join(", ")}; ` +
        `test fraction ${input.testFraction}, shuffle mulberry32 seed 0x${input.seed.toString(16)}, importer csv ${CSV_IMPORTER_VERSION}`,
      inputShape: [featureBytes],
      classes: classList.length,
      featureScale: 1 / 255,
    },
    plan: holdOut({ featureBytes, features, labels }, input.testFraction, input.seed),
    summary: [
      `${fmt(rows)} rows, ${featureBytes} feature columns, label column ${JSON.stringify(layout.labelName)}`,
      `classes (label -> id): ${classList.map((label, id) => `${JSON.stringify(label)} -> ${id} (${fmt(counts.get(label) ?? 0)} rows)`).join(", ")}`,
      `features quantised min-max to 0..255: ${columnRanges.slice(0, SUMMARY_COLUMNS).join(", ")}${featureBytes > SUMMARY_COLUMNS ? `, ... (all in the manifest's source)` : ""}`,
      ...(constant.length > 0 ? [`constant columns (all 0, they carry no information): ${constant.map((n) => JSON.stringify(n)).join(", ")}`] : []),
    ],
  };
}
