// Benchmark output: a table on stdout and a JSON file under e2e/results (ignored by git).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";

export const RESULTS_DIR = resolve(import.meta.dirname, "../results");

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function writeResults(name: string, rows: object): string {
  const file = resolve(RESULTS_DIR, `${name}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(rows, null, 2)}\n`);
  return file;
}

/** Fixed-width table from rows of already formatted cells. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, k) => Math.max(h.length, ...rows.map((r) => (r[k] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, k) => c.padStart(widths[k] ?? 0)).join("  ");
  return [line(headers), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

export const mb = (bytesPerSecond: number): string => (bytesPerSecond / 1e6).toFixed(2);

/** Read-modify-write of one section of a results file, for benchmarks whose parts run in separate workers. */
export function updateResults<T extends object>(name: string, section: string, value: unknown): T {
  const file = resolve(RESULTS_DIR, `${name}.json`);
  const current = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>) : {};
  current[section] = value;
  writeResults(name, current);
  return current as T;
}
