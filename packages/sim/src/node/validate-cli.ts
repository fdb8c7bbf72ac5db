// npm run sim:validate — the simulator against what real tabs measured on this machine.
//   npm run sim:validate [allreduce.json]: each direct row of bench:allreduce (ring, torus or groups
//     grid), one all-reduce with the links the bench measured (every ring link busy at once).
//   npm run sim:validate -- --train [train.json] [allreduce.json]: each bench:train row of 2 or more
//     tabs, whole rounds (the tabs' measured local work, the simulated all-reduce and commits), on
//     the ring links bench:allreduce measured at the same N (run it with BENCH_SIZES=407080, the
//     bench job's gradient, and BENCH_PEERS listing the same counts).
// Files default to e2e/results/allreduce.json and e2e/results/train.json.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseJob } from "@crowdtrain/protocol";
import { simulateAllReduce, simulateTraining } from "../index.ts";

/** A path inside the e2e namespace: loopback plus WebRTC's SCTP and the renderers' scheduling (not measured: an assumption). */
const PATH_RTT_MS = 2;
/** The MLP 784 → 128 → 10 (with biases) on MNIST that bench:train's job trains; checked against the job file. */
const MODEL_PARAMS = 101_770;
/** Adam keeps two moments per weight: the committed state is 12 bytes a parameter. */
const ADAM_STATE_BYTES_PER_PARAM = 12;

type AllReduceRow = { path: string; layout?: string; n: number; bytes: number; frameBytes: number; roundMs: number; ringLinksBw: number };
type TrainRow = { n: number; intervalMs?: number; computeMs: number; readbackMs: number; allReduceMs: number; updateMs: number };

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "../../../..");
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const readJson = (file: string): unknown => JSON.parse(readFileSync(file, "utf8"));
/** A link of `bytesPerSecond` each way up (the downlink unconstrained: the bench measured one direction at a time) and a 2 ms path. */
const benchLink = (bytesPerSecond: number) => ({ upBps: bytesPerSecond * 8, downBps: bytesPerSecond * 8 * 1_000, rttMs: PATH_RTT_MS / 2 });
const cell = (value: number, width: number): string => value.toFixed(0).padStart(width);

async function validateAllReduce(file: string): Promise<void> {
  const bench = readJson(file) as AllReduceRow[];
  console.log("layout        N  S (KiB)  measured ms  simulated ms  simulated/measured");
  for (const row of bench.filter((r) => r.path === "direct")) {
    const layout = row.layout?.startsWith("torus") === true ? "torus" : row.layout?.startsWith("groups") === true ? "groups" : "ring";
    const simulated = await simulateAllReduce({ peers: row.n, layout, bytes: row.bytes, frameBytes: row.frameBytes, link: benchLink(row.ringLinksBw) }, settle);
    console.log(`${(row.layout ?? "ring").padEnd(12)} ${String(row.n).padStart(2)}  ${(row.bytes / 1024).toFixed(0).padStart(7)}  ${cell(row.roundMs, 11)}  ${cell(simulated, 12)}  ${(simulated / row.roundMs).toFixed(2).padStart(18)}`);
  }
}

async function validateTraining(trainFile: string, allReduceFile: string): Promise<void> {
  const train = readJson(trainFile) as Record<string, unknown>;
  const links = readJson(allReduceFile) as AllReduceRow[];
  const job = parseJob(readJson(join(repo, "e2e/jobs/bench-train.json")));
  const modelled = job.dataset === "mnist" && job.model.kind === "mlp" && job.model.hidden.join() === "128" && job.optimizer.kind === "adam";
  if (!modelled) throw new Error("e2e/jobs/bench-train.json no longer trains the MLP 784-128-10 with Adam on MNIST that this check models: update MODEL_PARAMS and the state's bytes per parameter");
  const rows = Object.entries(train).flatMap(([key, value]) => (/^n\d+$/.test(key) && (value as TrainRow).n >= 2 ? [value as TrainRow] : []));
  if (rows.length === 0) throw new Error(`${trainFile} has no rows of 2 or more tabs: run BENCH_TRAIN_PEERS=2,4,6,8 npm run bench:train -- -g "round split"`);
  console.log(" N  plan   compute+read-back  update  all-reduce measured/simulated  commit to commit measured  simulated  ratio  local work + measured all-reduce  ratio");
  for (const row of rows) {
    if (typeof row.intervalMs !== "number") {
      console.log(`${String(row.n).padStart(2)}  skipped: measured before bench:train recorded commit-to-commit times; run it again`);
      continue;
    }
    const ring = links.find((r) => r.path === "direct" && (r.layout ?? "ring") === "ring" && r.n === row.n);
    if (ring === undefined) throw new Error(`${allReduceFile} has no direct ring row for ${row.n} tabs: run bench:allreduce with BENCH_PEERS including ${row.n}`);
    const predicted = await simulateTraining(
      { peers: row.n, batch: job.batchSize, computeMs: row.computeMs, readbackMs: row.readbackMs, updateMs: row.updateMs, link: benchLink(ring.ringLinksBw), modelParams: MODEL_PARAMS, stateBytesPerParam: ADAM_STATE_BYTES_PER_PARAM, topology: job.topology },
      settle,
    );
    // What the measured phases alone add up to: how much of the agreement is the inputs' own.
    const summed = row.computeMs + row.readbackMs + row.allReduceMs + row.updateMs;
    console.log(
      `${String(row.n).padStart(2)}  ${predicted.plan.padEnd(5)}  ${cell(row.computeMs + row.readbackMs, 17)}  ${cell(row.updateMs, 6)}  ${`${cell(row.allReduceMs, 0)} / ${cell(predicted.allReduceMs, 0)}`.padStart(29)}  ${cell(row.intervalMs, 25)}  ${cell(predicted.intervalMs, 9)}  ${(predicted.intervalMs / row.intervalMs).toFixed(2).padStart(5)}  ${cell(summed, 32)}  ${(summed / row.intervalMs).toFixed(2).padStart(5)}`,
    );
  }
}

const args = process.argv.slice(2);
if (args[0] === "--train") await validateTraining(args[1] ?? join(repo, "e2e/results/train.json"), args[2] ?? join(repo, "e2e/results/allreduce.json"));
else await validateAllReduce(args[0] ?? join(repo, "e2e/results/allreduce.json"));
