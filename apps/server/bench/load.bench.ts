// What the coordinator costs with a crowd (npm run bench:load): N scripted workers over real
// WebSockets on 127.0.0.1 train full rounds against the server started as the CLI starts it, in a
// process of its own, so its CPU time and memory are its own (read from /proc). Each round every
// worker gets its round message, enters the all-reduce (phase), reports the hash of the state the
// round's update leads to (computed once here: the update depends only on the round), the uploader
// uploads that state, and every worker waits for the commit. No browsers and no all-reduce: what is
// measured is the server, in rounds of at least MIN_ROUND_MS, and first idling (pings only) for its
// cost per second. Then the same crowd and messages against a bare WebSocket server (floor.ts): the
// transport's own cost, which no coordinator can go below. Prints a table and writes e2e/results/load.json.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { committedOptimizer, parseCoordinatorMessage, parseJob, PROTOCOL_VERSION, PlanBook, type Identity, type Job, type ResolvedCoordinatorMessage } from "@crowdtrain/protocol";
import { createOptimizer, decodeState, encodeState, hashState, type ModelState } from "@crowdtrain/training";
import { buildMnistDataset } from "@crowdtrain/training/node";
import WebSocket from "ws";
import { median, table, updateResults } from "../../../e2e/bench/report.ts";
import { startServerProcess, type ServerProcess } from "../../../e2e/support/server-process.ts";
import { measureFloor, type RoundSizes } from "./floor.ts";
import { cpuMs, rssMiB, within } from "./process-figures.ts";

/** Positive integers (comma-separated) from the environment, or a clear error naming the variable. */
function positiveInts(name: string, fallback: string): number[] {
  const text = process.env[name] ?? fallback;
  const values = text.split(",").map(Number);
  if (values.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${name} must be positive integers separated by commas, got "${text}"`);
  return values;
}

const CROWDS = positiveInts("BENCH_LOAD_WORKERS", "100,1000");
/** Rounds timed after WARMUP_ROUNDS untimed ones (sockets, JIT, first states). */
const [ROUNDS = 10] = positiveInts("BENCH_LOAD_ROUNDS", "10");
const WARMUP_ROUNDS = 2;
/** Workers opening their sockets at once. */
const JOIN_BATCH = 100;
/** Every wait of the benchmark: joining, a round's messages, the commit. */
const JOIN_TIMEOUT_MS = 60_000;
const ROUND_TIMEOUT_MS = 60_000;
/**
 * A round takes at least this long: each worker sends two messages a round, and the server closes a
 * socket sending more than 50 a second (hub.ts), which rounds of 100 scripted workers (under 20 ms)
 * exceeded. Real rounds take far longer. The idle CPU of the time spent pacing is taken out of CPU per round.
 */
const MIN_ROUND_MS = 60;
/** How long the joined crowd idles (heartbeats only) while the server's CPU is read, before training starts: four heartbeat checks. */
const IDLE_MS = 8_000;
/** The floor server has no heartbeats: a shorter idle reading suffices. */
const FLOOR_IDLE_MS = 2_000;

/**
 * A small model, so a state upload is ~50 KB and the update here costs nothing; one sample per
 * worker per round, so every worker is in every round (MNIST's 8,000 split evenly into epochs).
 */
const jobFor = (workers: number): Job =>
  parseJob({
    name: "bench-load",
    dataset: "mnist",
    model: { kind: "mlp", hidden: [8] },
    optimizer: { kind: "sgd", learningRate: 0.1, momentum: 0 },
    batchSize: workers,
    rounds: 100_000,
    evalEveryRounds: 100_000,
    // The workers apply made-up updates: a spot check would (rightly) fail them.
    spotCheck: 0,
  });

/** `firstRoundBytes`: the first round message (its plan in full); `roundBytes`: the latest (the plan by number while unchanged). */
/** `roundAt`, `commitAt`: when its latest round and commit messages arrived (performance.now()). */
/** `commitBytes`: the latest commit message. */
type Worker = { ws: WebSocket; identity: Identity; inbox: ResolvedCoordinatorMessage[]; plans: PlanBook; firstRoundBytes: number; roundBytes: number; commitBytes: number; roundAt: number; commitAt: number; wake: () => void };

function joinWorker(url: string): Promise<Worker> {
  return new Promise<Worker>((done, fail) => {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`);
    let worker: Worker | undefined;
    ws.on("open", () => ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, backend: "cpu" })));
    ws.on("message", (data: Buffer) => {
      const parsed = parseCoordinatorMessage(data.toString());
      if (worker === undefined) {
        const message = parsed;
        if (message.type !== "welcome") return fail(new Error(`expected welcome, got ${message.type}`));
        worker = { ws, identity: message.identity, inbox: [], plans: new PlanBook(), firstRoundBytes: 0, roundBytes: 0, commitBytes: 0, roundAt: 0, commitAt: 0, wake: () => undefined };
        return done(worker);
      }
      // Resolved like a real worker does: a plan named by a number this socket never got fails the run.
      const message = worker.plans.resolve(parsed);
      if (message.type === "commit") {
        worker.commitAt = performance.now();
        worker.commitBytes = data.byteLength;
      }
      if (message.type === "round") {
        worker.roundAt = performance.now();
        worker.roundBytes = data.byteLength;
        if (worker.firstRoundBytes === 0) worker.firstRoundBytes = data.byteLength;
      }
      worker.inbox.push(message);
      worker.wake();
    });
    ws.on("close", (code, reason) => fail(new Error(`socket closed: ${code} ${reason.toString()}`)));
    ws.on("error", fail);
  });
}

function next<T extends ResolvedCoordinatorMessage["type"]>(worker: Worker, type: T): Promise<Extract<ResolvedCoordinatorMessage, { type: T }>> {
  return new Promise((done) => {
    const look = (): void => {
      const at = worker.inbox.findIndex((m) => m.type === type);
      if (at < 0) return void (worker.wake = look);
      worker.wake = () => undefined;
      done(worker.inbox.splice(at, 1)[0] as Extract<ResolvedCoordinatorMessage, { type: T }>);
    };
    look();
  });
}

/** The state round `round`'s made-up update leads to from `base` (every worker computes the same). */
function stepFrom(job: Job, base: ModelState, round: number): ModelState {
  const optimizer = createOptimizer(committedOptimizer(job), base.weights.length);
  optimizer.restore(base.optimizer);
  const weights = base.weights.slice();
  optimizer.step(weights, new Float32Array(weights.length).fill(round / 1000));
  const state = optimizer.state();
  return { round, hash: hashState(weights, state), weights, optimizer: state };
}

async function upload(url: string, worker: Worker, state: ModelState): Promise<void> {
  const response = await fetch(`${url}/api/state/${state.round}`, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream", "x-crowdtrain-peer": worker.identity.peerId, authorization: `Bearer ${worker.identity.sessionToken}` },
    body: encodeState(state),
    signal: AbortSignal.timeout(ROUND_TIMEOUT_MS),
  });
  if (response.status !== 204) throw new Error(`upload of round ${state.round}: ${response.status} ${await response.text()}`);
}

/** `sizes`: one member's messages of a round (the floor replays them); `floorCpuMsPerRound`: the transport floor's CPU (floor.ts). */
type Row = { workers: number; rounds: number; serverCpuMsPerRound: number; floorCpuMsPerRound: number; idleCpuMsPerSecond: number; commitMs: number; nextRoundMs: number; firstRoundMessageBytes: number; roundMessageBytes: number; statusBytes: number; rssMiB: number; sizes: RoundSizes };

async function measure(n: number, dir: string): Promise<Omit<Row, "floorCpuMsPerRound">> {
  const job = jobFor(n);
  const jobFile = join(dir, `job-${n}.json`);
  writeFileSync(jobFile, JSON.stringify(job));
  const datasets = join(dir, "datasets");
  const server: ServerProcess = await startServerProcess("127.0.0.1", [
    "--job", jobFile, "--datasets", datasets, "--min-workers", String(n), "--max-members", String(2 * n),
    "--hellos-per-second", "100000", "--heartbeat-timeout-ms", "60000", "--checkpoint-every", "100000",
  ]);
  const crowd: Worker[] = [];
  try {
    const pid = server.pid;
    if (pid === undefined) throw new Error("the server has no process id");
    for (let k = 0; k < n; k += JOIN_BATCH) {
      crowd.push(...(await within(Promise.all(Array.from({ length: Math.min(JOIN_BATCH, n - k) }, () => joinWorker(server.url))), JOIN_TIMEOUT_MS, "joining")));
    }
    // What the crowd costs doing nothing (pings and pongs): a cost per second, part of every round's figure.
    const idleFrom = { cpu: cpuMs(pid), at: performance.now() };
    await new Promise((done) => setTimeout(done, IDLE_MS));
    const idleCpuMsPerSecond = ((cpuMs(pid) - idleFrom.cpu) / (performance.now() - idleFrom.at)) * 1000;
    let state = decodeState(new Uint8Array(await (await fetch(`${server.url}/api/state`, { signal: AbortSignal.timeout(ROUND_TIMEOUT_MS) })).arrayBuffer()));
    for (const w of crowd) w.ws.send(JSON.stringify({ type: "ready", round: state.round, hash: state.hash }));

    const commitMs: number[] = [];
    const nextRoundMs: number[] = [];
    let cpuAtStart = 0;
    let pacedMs = 0;
    let sent = { phaseBytes: 0, resultBytes: 0 };
    for (let r = 0; r < WARMUP_ROUNDS + ROUNDS; r++) {
      if (r === WARMUP_ROUNDS) cpuAtStart = cpuMs(pid);
      const roundStarted = performance.now();
      const rounds = await within(Promise.all(crowd.map((w) => next(w, "round"))), ROUND_TIMEOUT_MS, `round messages of round ${r + 1}`);
      // By arrival, not by when this loop looked (it may have paced the round): the last round message after the last commit.
      if (r > 0) nextRoundMs.push(Math.max(...crowd.map((w) => w.roundAt)) - Math.max(...crowd.map((w) => w.commitAt)));
      const round = rounds[0]!;
      const after = stepFrom(job, state, round.round);
      for (const [k, w] of crowd.entries()) {
        const message = rounds[k]!;
        const phase = JSON.stringify({ type: "phase", attempt: message.attempt, phase: "reducing" });
        const result = JSON.stringify({ type: "result", attempt: message.attempt, hash: after.hash, samples: message.lease.length, loss: 1, timings: { computeMs: 5, readbackMs: 1, allReduceMs: 2, updateMs: 1 }, bytesSent: 100, bytesReceived: 100 });
        w.ws.send(phase);
        w.ws.send(result);
        sent = { phaseBytes: Buffer.byteLength(phase), resultBytes: Buffer.byteLength(result) };
      }
      const reported = performance.now();
      const uploader = crowd.find((_, k) => rounds[k]!.upload);
      const uploaded = uploader === undefined ? Promise.resolve() : upload(server.url, uploader, after);
      const commits = await within(Promise.all(crowd.map((w) => next(w, "commit"))), ROUND_TIMEOUT_MS, `commits of round ${round.round}`);
      if (commits.some((c) => c.hash !== after.hash)) throw new Error(`round ${round.round} committed another hash`);
      commitMs.push(Math.max(...crowd.map((w) => w.commitAt)) - reported);
      await uploaded;
      const pace = Math.max(0, MIN_ROUND_MS - (performance.now() - roundStarted));
      if (r >= WARMUP_ROUNDS) pacedMs += pace;
      await new Promise((done) => setTimeout(done, pace));
      state = after;
    }
    const serverCpuMsPerRound = (cpuMs(pid) - cpuAtStart - (idleCpuMsPerSecond * pacedMs) / 1000) / ROUNDS;
    const statusBytes = (await (await fetch(`${server.url}/api/status`, { signal: AbortSignal.timeout(ROUND_TIMEOUT_MS) })).arrayBuffer()).byteLength;
    return {
      workers: n,
      rounds: ROUNDS,
      serverCpuMsPerRound,
      idleCpuMsPerSecond,
      commitMs: median(commitMs.slice(WARMUP_ROUNDS)),
      nextRoundMs: median(nextRoundMs.slice(WARMUP_ROUNDS)),
      firstRoundMessageBytes: median(crowd.map((w) => w.firstRoundBytes)),
      roundMessageBytes: median(crowd.map((w) => w.roundBytes)),
      statusBytes,
      rssMiB: rssMiB(pid),
      sizes: { ...sent, commitBytes: median(crowd.map((w) => w.commitBytes)), roundBytes: median(crowd.map((w) => w.roundBytes)) },
    };
  } finally {
    for (const w of crowd) w.ws.terminate();
    await server.dispose();
  }
}

const dir = mkdtempSync(join(tmpdir(), "crowdtrain-bench-load-"));
try {
  await buildMnistDataset(join(dir, "datasets", "mnist"));
  const rows: Row[] = [];
  for (const n of CROWDS) {
    const measured = await measure(n, dir);
    // After the server has exited, so the two never share the cores.
    const floorCpuMsPerRound = await measureFloor(n, measured.sizes, { warmupRounds: WARMUP_ROUNDS, rounds: ROUNDS, minRoundMs: MIN_ROUND_MS, idleMs: FLOOR_IDLE_MS, joinBatch: JOIN_BATCH, timeoutMs: ROUND_TIMEOUT_MS });
    const row: Row = { ...measured, floorCpuMsPerRound };
    rows.push(row);
    updateResults("load", `n${n}`, row);
    console.log(`${n} workers: ${row.serverCpuMsPerRound.toFixed(1)} ms server CPU per round, ${floorCpuMsPerRound.toFixed(1)} ms for the transport alone`);
  }
  console.log(
    `\n${table(
      ["workers", "server CPU ms/round", "transport floor ms/round", "server / floor", "idle CPU ms/s", "last result -> commit ms", "commit -> next round ms", "first round message B", "round message B", "status B", "server RSS MiB"],
      rows.map((r) => [String(r.workers), r.serverCpuMsPerRound.toFixed(1), r.floorCpuMsPerRound.toFixed(1), (r.serverCpuMsPerRound / r.floorCpuMsPerRound).toFixed(2), r.idleCpuMsPerSecond.toFixed(1), r.commitMs.toFixed(1), r.nextRoundMs.toFixed(1), String(r.firstRoundMessageBytes), String(r.roundMessageBytes), String(r.statusBytes), r.rssMiB.toFixed(0)]),
    )}`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
