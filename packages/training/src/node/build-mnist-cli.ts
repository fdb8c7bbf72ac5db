/** Usage: tsx packages/training/src/node/build-mnist-cli.ts <outDir>  (run at build time). */
import { resolve } from "node:path";
import { buildMnistDataset } from "./mnist-build.ts";

const outArg = process.argv[2];
if (outArg === undefined || outArg.startsWith("-")) {
  console.error("usage: build-mnist-cli <outDir>");
  process.exit(2);
}
const shards = (n: number): string => `${n} shard${n === 1 ? "" : "s"}`;
const started = performance.now();
const result = await buildMnistDataset(resolve(outArg));
const { manifest } = result;
const ms = Math.round(performance.now() - started);
console.log(
  `${result.rebuilt ? "wrote" : "up to date:"} ${result.dir}: ${manifest.name} train ${manifest.train.count} ` +
    `(${shards(manifest.train.shards.length)}), test ${manifest.test.count} (${shards(manifest.test.shards.length)}) in ${ms} ms`,
);
for (const { file, bytes } of result.files) console.log(`  ${file}  ${bytes} bytes`);
