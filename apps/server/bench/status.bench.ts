// What building the dashboard's status costs (npm run bench:status): every dashboard gets one each
// second and on every change, so it must grow with the members, never with the dataset's samples.
// A Coordinator is driven through its public events (join, ready, phase, result) like the hub does,
// with the server's own metrics, event log and roster; then buildStatus, Coordinator.state and
// JSON.stringify of the status are timed. Prints a table and writes e2e/results/status.json.
import { performance } from "node:perf_hooks";
import { Coordinator, type CommittedRound, type CoordinatorEffect } from "@crowdtrain/coordination";
import type { Job } from "@crowdtrain/protocol";
import { median, table, writeResults } from "../../../e2e/bench/report.ts";
import { EventLog } from "../src/cluster/event-log.ts";
import { PeerRoster } from "../src/dashboard/roster.ts";
import { DEFAULT_JOB_FILE, readJobFile } from "../src/training/job-file.ts";
import { Metrics } from "../src/training/metrics.ts";
import { DEFAULT_ROUND_DEADLINE_MS } from "../src/training/round-deadline.ts";
import { buildStatus, memberRow, type StatusInput } from "../src/training/status.ts";

/** Samples per round, the same in every setup so only members and samples vary (2 per member at 1,000). */
const BATCH = 2_000;
/** Committed rounds before timing: members have speeds, shares and hashes; the next round is open. */
const ROUNDS = 2;
/** Members that joined and left before the rounds: the status shows them as "gone". */
const DEPARTED = 16;
/** Each timing is the median of this many batches of calls, each batch at least BATCH_MS long. */
const BATCHES = 15;
const BATCH_MS = 40;
const SETUPS = [
  { members: 10, samples: 60_000 },
  { members: 100, samples: 60_000 },
  { members: 1_000, samples: 60_000 },
  { members: 1_000, samples: 6_000 },
];

type Setup = (typeof SETUPS)[number];
type Figures = Setup & { stateUs: number; buildStatusUs: number; stringifyUs: number; statusBytes: number };

const hashOf = (round: number): string => round.toString(16).padStart(64, "0");

/** A running job as the server holds it: the coordinator plus what the hub feeds from its effects. */
function runningJob(job: Job, { members, samples }: Setup): StatusInput {
  let now = Date.now();
  const coordinator = new Coordinator({
    trainCount: samples,
    batchSize: BATCH,
    seed: job.seed,
    maxRounds: undefined,
    maxEpochs: undefined,
    // Every member enters the first round, as after a start with --min-workers.
    minWorkers: members,
    initialHash: hashOf(0),
    aggregation: "mean",
    roundDeadlineMs: DEFAULT_ROUND_DEADLINE_MS,
    frameBytes: 64 * 1024,
    maxStrikes: 3,
    strikeDecayRounds: 20,
    joinGraceMs: 5_000,
    replanDelayMs: 200,
    accusationWindowMs: 10_000,
    stateUploadTimeoutMs: 15_000,
  });
  const metrics = new Metrics();
  const log = new EventLog();
  const roster = new PeerRoster();
  let lastCommit: CommittedRound | undefined;
  const dispatch = (event: Parameters<Coordinator["handle"]>[0]): void => {
    for (const effect of coordinator.handle(event)) apply(effect);
  };
  const apply = (effect: CoordinatorEffect): void => {
    if (effect.type === "log") log.add({ at: now, kind: effect.kind, text: effect.text });
    if (effect.type === "departed") roster.depart(memberRow(effect.member, job, false), now, effect.reason);
    if (effect.type === "committed") {
      metrics.addRound(effect.commit, now);
      lastCommit = effect.commit;
    }
  };

  for (let k = 0; k < DEPARTED; k++) {
    dispatch({ type: "join", peerId: `gone-${k}`, backend: "webgl", now });
    dispatch({ type: "leave", peerId: `gone-${k}`, reason: "closed its tab", now });
  }
  for (let k = 0; k < members; k++) {
    const peerId = `w-${k}`;
    dispatch({ type: "join", peerId, name: `tab ${k}`, backend: k % 3 === 0 ? "webgpu" : "webgl", adapter: "bench", now });
    dispatch({ type: "ready", peerId, round: 0, hash: hashOf(0), now });
  }
  for (let round = 1; round <= ROUNDS + 1; round++) {
    const open = coordinator.openRound;
    if (open === undefined) throw new Error(`round ${round} did not open (${members} members, ${samples} samples)`);
    for (const peerId of open.members) {
      now += 1;
      dispatch({ type: "phase", peerId, attempt: open.attempt, phase: "reducing", digest: hashOf(round), now });
    }
    // The last round stays open with every member in its all-reduce, as a dashboard usually sees it.
    if (round > ROUNDS) break;
    for (const peerId of open.members) {
      now += 1;
      const lease = open.leases.get(peerId)?.length ?? 0;
      const timings = { computeMs: 40 + (lease % 7), readbackMs: 2, allReduceMs: 30, updateMs: 3 };
      dispatch({ type: "result", peerId, attempt: open.attempt, hash: hashOf(round), samples: lease, loss: 2 / round, timings, bytesSent: 4e5, bytesReceived: 4e5, now });
    }
    if (coordinator.state.committedRound !== round) throw new Error(`round ${round} did not commit`);
  }
  return {
    job,
    coordinator,
    metrics,
    log,
    storeRound: ROUNDS,
    roster,
    lastCommit,
    now,
    isReducing: (peerId) => coordinator.isReducing(peerId),
    bans: [],
    audits: { tolerance: 1e-3, recent: [], passed: 0, failed: 0 },
  };
}

type Timer = { calls: number; run: (calls: number) => number; samples: number[] };

/** Times `call` in batches of calls long enough for the clock; the batch size is found by doubling (the warm-up). */
function timer(call: () => unknown): Timer {
  const run = (calls: number): number => {
    let returned = 0;
    const start = performance.now();
    for (let k = 0; k < calls; k++) if (call() !== undefined) returned++;
    const ms = performance.now() - start;
    if (returned !== calls) throw new Error("a timed call returned nothing");
    return ms;
  };
  let calls = 1;
  while (run(calls) < BATCH_MS) calls *= 2;
  return { calls, run, samples: [] };
}

function measureAll(job: Job): Figures[] {
  const jobs = SETUPS.map((setup) => {
    const input = runningJob(job, setup);
    const status = buildStatus(input);
    if (status.peers.filter((p) => p.state !== "gone").length !== setup.members) throw new Error("the status lacks members");
    return {
      setup,
      statusBytes: Buffer.byteLength(JSON.stringify(status)),
      state: timer(() => input.coordinator.state),
      buildStatus: timer(() => buildStatus(input)),
      stringify: timer(() => JSON.stringify(status)),
    };
  });
  // Batches of every setup interleave, so a GC or JIT phase hits all of them alike, not one setup.
  for (let b = 0; b < BATCHES; b++) {
    for (const j of jobs) for (const t of [j.state, j.buildStatus, j.stringify]) t.samples.push((t.run(t.calls) * 1000) / t.calls);
  }
  return jobs.map((j) => ({
    ...j.setup,
    stateUs: median(j.state.samples),
    buildStatusUs: median(j.buildStatus.samples),
    stringifyUs: median(j.stringify.samples),
    statusBytes: j.statusBytes,
  }));
}

const job = await readJobFile(DEFAULT_JOB_FILE);
const figures = measureAll(job);
const find = (members: number, samples: number): Figures => {
  const found = figures.find((f) => f.members === members && f.samples === samples);
  if (found === undefined) throw new Error(`no setup with ${members} members and ${samples} samples`);
  return found;
};
const ratios = (a: Figures, b: Figures) => ({
  state: a.stateUs / b.stateUs,
  buildStatus: a.buildStatusUs / b.buildStatusUs,
  stringify: a.stringifyUs / b.stringifyUs,
});
// O(members): about 10 from 100 to 1,000 members. Not O(samples): about 1 from 6,000 to 60,000 samples.
const members1000vs100 = ratios(find(1_000, 60_000), find(100, 60_000));
const samples60000vs6000 = ratios(find(1_000, 60_000), find(1_000, 6_000));

const us = (x: number): string => x.toFixed(1);
console.log(
  table(
    ["members", "samples", "state µs", "buildStatus µs", "stringify µs", "status KiB"],
    figures.map((f) => [String(f.members), String(f.samples), us(f.stateUs), us(f.buildStatusUs), us(f.stringifyUs), (f.statusBytes / 1024).toFixed(1)]),
  ),
);
const x = (r: number): string => `${r.toFixed(2)}x`;
console.log(
  `\n${table(
    ["ratio", "state", "buildStatus", "stringify", "expected"],
    [
      ["1,000 vs 100 members", x(members1000vs100.state), x(members1000vs100.buildStatus), x(members1000vs100.stringify), "~10x (O(members))"],
      ["60,000 vs 6,000 samples", x(samples60000vs6000.state), x(samples60000vs6000.buildStatus), x(samples60000vs6000.stringify), "~1x (not O(samples))"],
    ],
  )}`,
);
const file = writeResults("status", {
  node: process.version,
  batch: BATCH,
  committedRounds: ROUNDS,
  departed: DEPARTED,
  setups: figures,
  ratios: { members1000vs100, samples60000vs6000 },
});
console.log(`\nwrote ${file}`);
