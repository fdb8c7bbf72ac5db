// npm run sim — the real coordinator and all-reduce on simulated volunteers in virtual time: for each
// swarm size, plan, algorithm and codec, the scaling efficiency, where a round's time goes and the
// bytes a peer sends. Writes e2e/results/sim.json. SIM_PEERS=8,32 SIM_PLANS=torus SIM_CODECS=int8
// SIM_INNER_STEPS=1,64 SIM_ROUNDS=2 narrow a run; SIM_HOMOGENEOUS=1 puts every peer at the medians;
// SIM_DEPARTURES_PER_MINUTE adds churn (as many joins); SIM_OUT names the results file.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Codec, Topology } from "@crowdtrain/protocol";
import { DEFAULT_POPULATION, homogeneous, median, standInParams, Swarm, VirtualClock, type SwarmConfig, type SwarmResult } from "../index.ts";

/** A comma-separated SIM_* list; a value outside `allowed` stops the run with a message naming the variable. */
function list<T extends string | number>(name: string, fallback: T[], parse: (item: string) => T | undefined): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  return raw.split(",").map((item) => {
    const value = parse(item.trim());
    if (value === undefined) usage(`${name}=${raw}: "${item}" is not allowed`);
    return value as T;
  });
}
function usage(problem: string): never {
  console.error(`npm run sim: ${problem}. SIM_PEERS: whole numbers from 2 to 4096; SIM_PLANS: ring, torus, groups; SIM_INNER_STEPS: whole numbers from 1 to 1000; SIM_CODECS: dense, fp16, int8; SIM_ROUNDS: 1 to 100; SIM_DEPARTURES_PER_MINUTE: 0 to 600.`);
  process.exit(2);
}
const whole = (min: number, max: number) => (item: string): number | undefined => (/^\d+$/.test(item) && Number(item) >= min && Number(item) <= max ? Number(item) : undefined);
const oneOf = <T extends string>(...allowed: T[]) => (item: string): T | undefined => allowed.find((a) => a === item);
const single = (name: string, fallback: number, parse: (item: string) => number | undefined): number => list(name, [fallback], parse)[0] as number;

const PEERS = list("SIM_PEERS", [8, 32, 128, 512, 1000], whole(2, 4096));
const PLANS: Topology[] = list("SIM_PLANS", ["ring", "torus", "groups"], oneOf("ring", "torus", "groups"));
const INNER_STEPS = list("SIM_INNER_STEPS", [1, 8], whole(1, 1000));
const CODECS: Exclude<Codec, "topk">[] = list("SIM_CODECS", ["dense", "int8"], oneOf("dense", "fp16", "int8"));
const ROUNDS = single("SIM_ROUNDS", 3, whole(1, 100));
/** A flat ring of hundreds costs O(N²) simulated frames a round: fewer rounds there keep the run in minutes. */
const BIG_RING_ROUNDS = 1;
const BIG_RING = 256;
/** The default job's MLP (784 → 128 → 10, with biases): 101,770 parameters. */
const MODEL_PARAMS = 101_770;
const DEPARTURES_PER_MINUTE = single("SIM_DEPARTURES_PER_MINUTE", 0, whole(0, 600));
/** SIM_HOMOGENEOUS=1: every peer at the medians (the 20 Mbit/s, 50 ms path), no stragglers. */
const POPULATION = process.env.SIM_HOMOGENEOUS === "1" ? homogeneous(DEFAULT_POPULATION) : DEFAULT_POPULATION;
const OUT = process.env.SIM_OUT ?? "sim";

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

type Row = Omit<SwarmResult, "rounds"> & {
  peers: number;
  plan: string;
  innerSteps: number;
  codec: string;
  roundMs: number;
  computeMs: number;
  allReduceMs: number;
  realMs: number;
};


async function one(peers: number, topology: Topology, innerSteps: number, codec: Exclude<Codec, "topk">): Promise<Row> {
  const config: SwarmConfig = {
    peers,
    topology,
    codec,
    innerSteps,
    perPeerBatch: 64,
    leaseAhead: false,
    updateMs: 0,
    modelParams: MODEL_PARAMS,
    simulatedParams: standInParams(codec, MODEL_PARAMS),
    stateBytes: MODEL_PARAMS * 12,
    population: POPULATION,
    departuresPerMinute: DEPARTURES_PER_MINUTE,
    joinsPerMinute: DEPARTURES_PER_MINUTE,
    rounds: topology === "ring" && peers > BIG_RING ? Math.min(ROUNDS, BIG_RING_ROUNDS) : ROUNDS,
    maxVirtualMs: 6 * 3_600_000,
    seed: 1,
  };
  const started = Date.now();
  const result = await new Swarm(config, new VirtualClock(settle)).run();
  const { rounds, ...rest } = result;
  const plan = rounds[0]?.plan ?? topology;
  return {
    peers,
    plan,
    innerSteps,
    codec,
    roundMs: median(rounds.map((r) => r.roundMs)),
    computeMs: median(rounds.map((r) => r.computeMs)),
    allReduceMs: median(rounds.map((r) => r.allReduceMs)),
    realMs: Date.now() - started,
    ...rest,
  };
}

const rows: Row[] = [];
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, `../../../../e2e/results/${OUT}.json`);
mkdirSync(dirname(out), { recursive: true });
for (const peers of PEERS) {
  for (const topology of PLANS) {
    for (const innerSteps of INNER_STEPS) {
      for (const codec of CODECS) {
        const row = await one(peers, topology, innerSteps, codec);
        rows.push(row);
        writeFileSync(out, `${JSON.stringify({ population: POPULATION, modelParams: MODEL_PARAMS, perPeerBatch: 64, rows }, null, 2)}\n`);
        const algorithm = innerSteps === 1 ? "sync" : `diloco H=${innerSteps}`;
        console.log(
          `N=${String(peers).padStart(4)} ${row.plan.padEnd(12)} ${algorithm.padEnd(12)} ${codec.padEnd(5)} efficiency ${row.scalingEfficiency.toFixed(3)}  round ${(row.roundMs / 1000).toFixed(2)} s (compute ${(row.computeMs / 1000).toFixed(2)}, all-reduce ${(row.allReduceMs / 1000).toFixed(2)})  ${(row.bytesPerPeerPerRound / 1024).toFixed(0)} KiB/peer  aborted ${row.aborted}  [${(row.realMs / 1000).toFixed(1)} s real, ${row.events} events]`,
        );
      }
    }
  }
}
console.log(`written to ${out}`);
