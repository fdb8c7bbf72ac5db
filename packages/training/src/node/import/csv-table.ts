import { ImportError, UsageError, fmt } from "./errors.ts";

/**
 * The pure part of the CSV import: which column is the label, strict number parsing, per-column
 * min-max quantisation to uint8, and the label -> class id mapping. csv.ts feeds it the records.
 */

export interface CsvLayout {
  /** Cells per row. */
  width: number;
  labelIndex: number;
  labelName: string;
  /** Feature columns in file order (every column but the label). */
  featureIndices: number[];
  featureNames: string[];
}

/**
 * Resolves --label against the header (a column name) or, with --no-header, a 0-based index.
 * `firstRow` is the header, or the first data row when there is none.
 */
export function resolveLayout(firstRow: readonly string[], label: string, hasHeader: boolean): CsvLayout {
  const width = firstRow.length;
  let labelIndex: number;
  if (hasHeader) {
    const matches = firstRow.flatMap((name, i) => (name === label ? [i] : []));
    if (matches.length === 0) throw new UsageError(`--label ${JSON.stringify(label)}: no such column; the header has ${firstRow.map((n) => JSON.stringify(n)).join(", ")}`);
    if (matches.length > 1) throw new UsageError(`--label ${JSON.stringify(label)}: ${matches.length} columns have that name (${matches.join(", ")}); use --no-header and an index`);
    labelIndex = matches[0] as number;
  } else {
    if (!/^\d+$/.test(label)) throw new UsageError(`--label ${JSON.stringify(label)}: with --no-header, give the label column's 0-based index`);
    labelIndex = Number(label);
    if (labelIndex >= width) throw new UsageError(`--label ${labelIndex}: the first row has ${width} columns (0..${width - 1})`);
  }
  if (width < 2) throw new ImportError(`only ${width} column: need a label column and at least one feature column`);
  const featureIndices = firstRow.flatMap((_, i) => (i === labelIndex ? [] : [i]));
  const featureNames = featureIndices.map((i) => (hasHeader ? (firstRow[i] as string) : `column ${i}`));
  return { width, labelIndex, labelName: hasHeader ? label : `column ${labelIndex}`, featureIndices, featureNames };
}

// Plain decimal or scientific notation: Number() alone would take "", " ", "0x1f" and "Infinity".
const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

/** The finite number a cell holds, or undefined. */
export function parseCell(cell: string): number | undefined {
  if (!NUMBER.test(cell)) return undefined;
  const value = Number(cell);
  return Number.isFinite(value) ? value : undefined;
}

/** Running min and max of each feature column. */
export class ColumnRanges {
  readonly min: Float64Array;
  readonly max: Float64Array;
  constructor(columns: number) {
    this.min = new Float64Array(columns).fill(Infinity);
    this.max = new Float64Array(columns).fill(-Infinity);
  }
  add(values: Float64Array): void {
    for (let j = 0; j < values.length; j++) {
      const x = values[j] as number;
      if (x < (this.min[j] as number)) this.min[j] = x;
      if (x > (this.max[j] as number)) this.max[j] = x;
    }
  }
}

/** round(255 (x - min) / (max - min)), clamped; a constant column (max = min) maps to 0. */
export function quantise(x: number, min: number, max: number): number {
  if (!(max > min)) return 0;
  const q = Math.round(((x - min) / (max - min)) * 255);
  return q < 0 ? 0 : q > 255 ? 255 : q;
}

export const MAX_CLASSES = 256;

/**
 * Distinct labels in class id order: numerically when every label is a number ("2" before "10"),
 * otherwise by UTF-16 code units (locale-independent, so every machine gets the same ids).
 */
export function sortLabels(labels: Iterable<string>): string[] {
  const all = [...labels];
  const numbers = all.map(parseCell);
  if (numbers.every((n) => n !== undefined)) {
    return all.map((label, i) => ({ label, n: numbers[i] as number })).sort((a, b) => a.n - b.n || codeUnitOrder(a.label, b.label)).map((x) => x.label);
  }
  return all.sort(codeUnitOrder);
}

function codeUnitOrder(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Label -> class id; refuses fewer than 2 or more than 256 distinct labels. */
export function classIds(counts: ReadonlyMap<string, number>, labelName: string): Map<string, number> {
  if (counts.size < 2) {
    const only = [...counts.keys()].map((l) => JSON.stringify(l)).join("");
    throw new ImportError(`label column ${labelName} holds ${counts.size === 0 ? "no labels" : `only one label, ${only}`}: a classification dataset needs at least 2 classes`);
  }
  if (counts.size > MAX_CLASSES) throw new ImportError(`label column ${labelName} holds ${fmt(counts.size)} distinct labels, more than ${MAX_CLASSES} (labels are stored as one byte)`);
  return new Map(sortLabels(counts.keys()).map((label, id) => [label, id]));
}
