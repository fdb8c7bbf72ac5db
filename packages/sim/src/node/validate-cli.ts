// npm run sim:validate — the simulator's all-reduce time against what bench:allreduce measured in
// real tabs on this machine (e2e/results/allreduce.json, or the file given): each direct row's
// ring, torus or groups grid, with the links the bench measured (every ring link busy at once) and a 1 ms path.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { simulateAllReduce } from "../index.ts";

/** A path inside the e2e namespace: loopback plus WebRTC's SCTP and the renderers' scheduling (not measured: an assumption). */
const PATH_RTT_MS = 2;

type BenchRow = { path: string; layout?: string; n: number; bytes: number; frameBytes: number; roundMs: number; ringLinksBw: number };

const here = dirname(fileURLToPath(import.meta.url));
const file = process.argv[2] ?? join(here, "../../../../e2e/results/allreduce.json");
const bench = JSON.parse(readFileSync(file, "utf8")) as BenchRow[];
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
console.log("layout        N  S (KiB)  measured ms  simulated ms  simulated/measured");
for (const row of bench.filter((r) => r.path === "direct")) {
  const layout = row.layout?.startsWith("torus") === true ? "torus" : row.layout?.startsWith("groups") === true ? "groups" : "ring";
  const link = { upBps: row.ringLinksBw * 8, downBps: row.ringLinksBw * 8 * 1_000, rttMs: PATH_RTT_MS / 2 };
  const simulated = await simulateAllReduce({ peers: row.n, layout, bytes: row.bytes, frameBytes: row.frameBytes, link }, settle);
  console.log(`${(row.layout ?? "ring").padEnd(12)} ${String(row.n).padStart(2)}  ${String(row.bytes / 1024).padStart(7)}  ${row.roundMs.toFixed(0).padStart(11)}  ${simulated.toFixed(0).padStart(12)}  ${(simulated / row.roundMs).toFixed(2).padStart(18)}`);
}
