import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command } from "./import-support.ts";
import { parseCell, quantise, sortLabels } from "../src/node/import/csv-table.ts";
import { runImport } from "../src/node/import/run.ts";
import { loadSplitFromDir } from "../src/node/index.ts";

let root = "";
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "crowdtrain-import-csv-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

let files = 0;
async function csv(text: string): Promise<string> {
  const path = join(root, `in-${files++}.csv`);
  await writeFile(path, text);
  return path;
}

const out = (): string => join(root, "out");
let names = 0;
const importCsv = (file: string, ...args: string[]) => runImport(command(["import", "csv", file, "--name", `t${names++}`, "--force", ...args]), out());

/** Every sample of both splits as [label, ...features], sorted (the order is the shuffle's). */
async function allRows(dir: string): Promise<number[][]> {
  const rows: number[][] = [];
  for (const split of ["train", "test"] as const) {
    const data = await loadSplitFromDir(dir, split);
    for (let i = 0; i < data.count; i++) rows.push([data.labels[i] as number, ...data.features.subarray(i * data.featureBytes, (i + 1) * data.featureBytes)]);
  }
  const lexicographic = (a: number[], b: number[]): number => {
    const differs = a.findIndex((x, i) => x !== b[i]);
    return differs < 0 ? 0 : (a[differs] as number) - (b[differs] as number);
  };
  return rows.sort(lexicographic);
}

describe("csv quantisation and labels (pure)", () => {
  it("maps min..max to 0..255 with rounding; a constant column to 0", () => {
    expect([0, 2.5, 5, 7.5, 10].map((x) => quantise(x, 0, 10))).toEqual([0, 64, 128, 191, 255]);
    expect(quantise(-3, -3, -1)).toBe(0);
    expect(quantise(4, 4, 4)).toBe(0);
  });

  it("parses plain and scientific numbers only", () => {
    expect(["1", "-2.5", ".5", "1e3", "+4.", "-1.5E-2"].map(parseCell)).toEqual([1, -2.5, 0.5, 1000, 4, -0.015]);
    expect(["", "abc", "0x10", "Infinity", "NaN", "1,5", "1e999"].map(parseCell)).toEqual(Array(7).fill(undefined));
  });

  it("sorts numeric labels numerically and others by code unit", () => {
    expect(sortLabels(["10", "2", "-1"])).toEqual(["-1", "2", "10"]);
    expect(sortLabels(["b", "B", "a", "10", "9"])).toEqual(["10", "9", "B", "a", "b"]);
  });
});

describe("import csv", () => {
  it("reads quoted fields and a string label column, maps labels in sorted order, records them", async () => {
    const file = await csv(['"width, cm",species,"height ""h"""', '1.5,"virginica, tall",10', "3.5,setosa,20", "2.5,setosa,30", '5.5,"virginica, tall",40', ""].join("\n"));
    const result = await importCsv(file, "--label", "species");
    expect(result.manifest).toMatchObject({ inputShape: [2], classes: 2, featureScale: 1 / 255 });
    expect(result.manifest.source).toContain('classes 0="setosa", 1="virginica, tall"');
    expect(result.manifest.source).toContain('"width, cm" [1.5, 5.5], "height \\"h\\"" [10, 40]');
    expect(result.summary.join("\n")).toContain('"setosa" -> 0 (2 rows), "virginica, tall" -> 1 (2 rows)');
    // width 1.5..5.5 and height 10..40, each min-max to 0..255.
    expect(await allRows(result.dir)).toEqual([
      [0, 64, 170],
      [0, 128, 85],
      [1, 0, 0],
      [1, 255, 255],
    ]);
  });

  it("maps a constant column to 0 and says so", async () => {
    const file = await csv("a,k,y\n1,7,x\n2,7,y\n3,7,x\n");
    const result = await importCsv(file, "--label", "y");
    expect((await allRows(result.dir)).map((row) => row[2])).toEqual([0, 0, 0]);
    expect(result.summary.join("\n")).toContain('constant columns (all 0, they carry no information): "k"');
  });

  it("takes a 0-based label index with --no-header", async () => {
    const file = await csv("0,1,5\n10,0,5\n");
    const result = await importCsv(file, "--label", "1", "--no-header");
    expect(result.manifest.source).toContain('label column "column 1"');
    expect(await allRows(result.dir)).toEqual([[0, 255, 0], [1, 0, 0]]);
  });

  it("names the line of a ragged row, and the line and column of a non-number", async () => {
    await expect(importCsv(await csv("a,b,y\n1,2,x\n3,4,z\n5,6\n"), "--label", "y")).rejects.toThrow(/in-\d+\.csv:4: 2 cells, expected 3 like the header/);
    await expect(importCsv(await csv('a,b,y\n1,2,x\n"3",oops,z\n'), "--label", "y")).rejects.toThrow(/in-\d+\.csv:3: column "b" holds "oops", not a number/);
    await expect(importCsv(await csv("a,b,y\n1,,x\n"), "--label", "y")).rejects.toThrow(/:2: column "b" holds "", not a number/);
  });

  it("refuses an empty file, a single class, too many classes and a missing label column", async () => {
    await expect(importCsv(await csv(""), "--label", "y")).rejects.toThrow(/empty file/);
    await expect(importCsv(await csv("a,y\n"), "--label", "y")).rejects.toThrow(/no data rows after the header/);
    await expect(importCsv(await csv("a,y\n1,x\n2,x\n"), "--label", "y")).rejects.toThrow(/only one label, "x": .* at least 2 classes/);
    const many = ["a,y", ...Array.from({ length: 300 }, (_, i) => `${i},c${i}`)].join("\n");
    await expect(importCsv(await csv(many), "--label", "y")).rejects.toThrow(/:258: label "c256" is the 257th distinct one; at most 256 classes/);
    await expect(importCsv(await csv("a,b\n1,2\n"), "--label", "y")).rejects.toThrow(/--label "y": no such column; the header has "a", "b"/);
  });

  it("reports malformed quoting from the parser with the file", async () => {
    await expect(importCsv(await csv('a,y\n1,"x\n2,y\n'), "--label", "y")).rejects.toThrow(/in-\d+\.csv: .*quote/i);
  });
});
