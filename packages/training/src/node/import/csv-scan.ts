import { createReadStream } from "node:fs";
import { CsvError, parse } from "csv-parse";
import { parseCell, resolveLayout, type CsvLayout } from "./csv-table.ts";
import { ImportError, fileError } from "./errors.ts";

/**
 * One streaming pass over a CSV file with csv-parse (quoted fields, embedded delimiters and
 * newlines, a BOM): checks every row's cell count, numbers and label, and hands valid rows over.
 * The import makes two passes (ranges, then quantisation), so the file is never held as floats.
 */

export interface CsvOptions {
  file: string;
  /** A column name, or with `header: false` a 0-based index. */
  label: string;
  header: boolean;
  delimiter: string;
}

export interface CsvRow {
  /** 1-based line of the file where the record ends (the header is line 1). */
  line: number;
  label: string;
  /** The feature cells, in layout.featureIndices order; reused from row to row. */
  values: Float64Array;
}

interface ParsedRecord {
  record: string[];
  info: { lines: number };
}

/** Runs `visit` on every data row; returns the layout. Errors name the file, the line and the column. */
export async function scanCsv(options: CsvOptions, visit: (row: CsvRow, layout: CsvLayout) => void): Promise<CsvLayout> {
  const { file, header } = options;
  const input = createReadStream(file);
  const parser = parse({ bom: true, delimiter: options.delimiter, relax_column_count: true, skip_empty_lines: true, trim: true, info: true });
  // pipe() does not forward the source's errors (ENOENT, EISDIR): without this the loop would hang.
  input.on("error", (error) => parser.destroy(error));
  input.pipe(parser);
  let layout: CsvLayout | undefined;
  let values = new Float64Array(0);
  try {
    for await (const item of parser) {
      const { record, info } = item as ParsedRecord;
      const line = info.lines;
      if (layout === undefined) {
        layout = resolveLayout(record, options.label, header);
        values = new Float64Array(layout.featureIndices.length);
        if (header) continue;
      }
      if (record.length !== layout.width) {
        throw new ImportError(`${file}:${line}: ${record.length} cells, expected ${layout.width} like ${header ? "the header" : "the first row"}`);
      }
      for (let j = 0; j < values.length; j++) {
        const cell = record[layout.featureIndices[j] as number] as string;
        const value = parseCell(cell);
        if (value === undefined) throw new ImportError(`${file}:${line}: column ${JSON.stringify(layout.featureNames[j])} holds ${JSON.stringify(cell)}, not a number`);
        values[j] = value;
      }
      const label = record[layout.labelIndex] as string;
      if (label === "") throw new ImportError(`${file}:${line}: the label (column ${JSON.stringify(layout.labelName)}) is empty`);
      visit({ line, label, values }, layout);
    }
  } catch (error) {
    if (error instanceof CsvError) throw new ImportError(`${file}: ${error.message}`, { cause: error });
    // A system error of the file itself (no such file, a directory, no permission), or a bug.
    throw fileError(error, `cannot read ${file}`);
  } finally {
    input.destroy();
  }
  if (layout === undefined) throw new ImportError(`${file}: empty file (no rows)`);
  return layout;
}
