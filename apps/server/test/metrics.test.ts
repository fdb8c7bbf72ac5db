import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { parseJob, parseStatus, PROTOCOL_VERSION, type Status } from "@crowdtrain/protocol";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startServer, type ServerHandle } from "../src/server.ts";
import { ScriptedWorker } from "./support/scripted-worker.ts";

/** Building the MNIST fixture and starting the server. */
const SETUP_TIMEOUT_MS = 60_000;
/** The whole scenario: a few rounds of scripted workers, then waiting for evaluations and checkpoints. */
const TEST_TIMEOUT_MS = 60_000;
/** Evaluations and checkpoint writes run after their commit, off the round's path. */
const SETTLE_TIMEOUT_MS = 20_000;
const POLL_INTERVAL_MS = 100;
/** promtool parses a few hundred lines; anything near this is a hang. */
const PROMTOOL_TIMEOUT_MS = 10_000;
/** What ScriptedWorker reports per result (see support/scripted-worker.ts). */
const SCRIPTED_BYTES_PER_REPORT = 100;
const SCRIPTED_COMPUTE_S = 0.005;
/** The hub's MAX_WORKER_MESSAGE_BYTES (16 KiB): a message this long is over it whatever else it holds. */
const WORKER_MESSAGE_LIMIT_BYTES = 16 * 1024;

type Labels = Record<string, string>;

/** The samples of `name` in a scrape (comment lines skipped), each with its labels. */
function samplesOf(text: string, name: string): { labels: Labels; value: number }[] {
  return text.split("\n").flatMap((line) => {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) return [];
    const labels: Labels = Object.fromEntries([...(match[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    return [{ labels, value: Number(match[3]) }];
  });
}

const hasLabels = (labels: Labels, wanted: Labels): boolean => Object.entries(wanted).every(([k, v]) => labels[k] === v);

/** The value of the sample `name` whose labels are exactly `labels`, or undefined. */
function sample(text: string, name: string, labels: Labels = {}): number | undefined {
  const exact = (found: Labels): boolean => Object.keys(found).length === Object.keys(labels).length && hasLabels(found, labels);
  return samplesOf(text, name).find((s) => exact(s.labels))?.value;
}

/** Sum of every sample of `name` whose labels include `labels`. */
function total(text: string, name: string, labels: Labels = {}): number {
  return samplesOf(text, name).reduce((sum, s) => sum + (hasLabels(s.labels, labels) ? s.value : 0), 0);
}

/** `promtool check metrics` on the scrape: the format parses and passes Prometheus's naming lint. */
function promtool(text: string): { status: number | null; output: string } {
  const result = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: PROMTOOL_TIMEOUT_MS });
  if (result.error !== undefined) {
    if ((result.error as NodeJS.ErrnoException).code === "ENOENT") {
      throw new Error("promtool is not on PATH: install it with `apt-get install prometheus` (.ci/run does)");
    }
    throw result.error;
  }
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe("GET /metrics", () => {
  const job = parseJob({
    name: "metrics-test",
    dataset: "mnist",
    model: { kind: "mlp", hidden: [4] },
    optimizer: { kind: "sgd", learningRate: 0.1 },
    batchSize: 30,
    rounds: 50,
    spotCheck: 0,
    evalEveryRounds: 1,
  });
  let datasets: string;
  let dataDir: string;
  let server: ServerHandle;

  beforeAll(async () => {
    await tf.setBackend("cpu");
    datasets = mkdtempSync(join(tmpdir(), "crowdtrain-datasets-"));
    dataDir = mkdtempSync(join(tmpdir(), "crowdtrain-data-"));
    await buildMnistDataset(join(datasets, "mnist"));
    // Checkpoints every round, so their write time shows; hellos unthrottled, so the test's many sockets are not refused for rate.
    server = await startServer({ port: 0, training: { job, datasetsDir: datasets, dataDir, checkpointEveryRounds: 1, minWorkers: 2, hellosPerSecond: 100 } });
  }, SETUP_TIMEOUT_MS);

  afterAll(async () => {
    await server?.close();
    rmSync(datasets, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  });

  const status = async (): Promise<Status> => parseStatus(await (await fetch(`${server.url}/api/status`)).json());
  const scrape = async (): Promise<{ text: string; type: string | null }> => {
    const response = await fetch(`${server.url}/metrics`);
    expect(response.status).toBe(200);
    return { text: await response.text(), type: response.headers.get("content-type") };
  };
  /** Polls until `done` holds (evaluations and checkpoints land after their commits). */
  const settle = async (what: string, done: () => Promise<boolean>): Promise<void> => {
    const deadline = Date.now() + SETTLE_TIMEOUT_MS;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`${what} did not happen within ${SETTLE_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
  };

  it("before any round: every fixed series at 0, evaluations NaN; promtool accepts it", async () => {
    const { text } = await scrape();
    expect(sample(text, "crowdtrain_rounds_committed_total")).toBe(0);
    expect(sample(text, "crowdtrain_rounds_aborted_total", { cause: "hash-split" })).toBe(0);
    expect(sample(text, "crowdtrain_round_phase_seconds_count", { phase: "update" })).toBe(0);
    expect(sample(text, "crowdtrain_rejected_messages_total", { channel: "upload", reason: "busy" })).toBe(0);
    expect(total(text, "crowdtrain_peers")).toBe(0);
    // No evaluation yet reads as "unknown", never as a model that is always wrong.
    expect(sample(text, "crowdtrain_eval_accuracy_ratio")).toBeNaN();
    expect(promtool(text)).toEqual({ status: 0, output: "" });
  });

  it("counts commits, aborts by cause, peers by backend, bytes, evaluations, checkpoints and refusals; promtool accepts it", async () => {
    const [a, b] = (await Promise.all([0, 1].map(() => new ScriptedWorker(server.url).join()))) as [ScriptedWorker, ScriptedWorker];
    await Promise.all([a, b].map((w) => w.sync()));
    // Two rounds of two members (4 reports), then b leaves mid-round (a departure abort), then a
    // commits one round alone (1 report).
    for (let k = 0; k < 2; k++) await Promise.all([a, b].map((w) => w.honestRound()));
    await Promise.all([a.next("round"), b.next("round")]);
    b.close();
    await a.next("abort");
    await a.honestRound();
    const reports = 2 * 2 + 1;

    // Refusals: a malformed message, a message before hello, one over the size limit, an upload without credentials.
    const garbled = new ScriptedWorker(server.url);
    await garbled.opened();
    garbled.send({ type: "no-such-message" });
    expect((await garbled.closedBy()).code).toBe(1008);
    const impatient = new ScriptedWorker(server.url);
    await impatient.opened();
    impatient.send({ type: "ready", round: 0, hash: "0".repeat(64) });
    expect((await impatient.closedBy()).code).toBe(1008);
    const bloated = new ScriptedWorker(server.url);
    await bloated.opened();
    bloated.send({ type: "hello", name: "x".repeat(WORKER_MESSAGE_LIMIT_BYTES) });
    expect((await bloated.closedBy()).code).toBe(1009);
    expect((await fetch(`${server.url}/api/state/1`, { method: "PUT", body: new Uint8Array(8) })).status).toBe(401);

    // A member on another backend, still joining (it never says ready).
    const wasm = new ScriptedWorker(server.url);
    await wasm.opened();
    wasm.send({ type: "hello", protocol: PROTOCOL_VERSION, backend: "wasm" });
    const wasmId = (await wasm.next("welcome")).identity.peerId;

    // Every committed state evaluated and checkpointed (no round commits meanwhile: a waits).
    await settle("evaluating round 3", async () => (await status()).accuracy.at(-1)?.round === 3);
    await settle("checkpointing round 3", async () => (await status()).events.some((e) => e.kind === "checkpoint" && /round 3 /.test(e.text)));

    const now = await status();
    const { text, type } = await scrape();
    expect(type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(now.round).toBe(3);
    expect(sample(text, "crowdtrain_rounds_committed_total")).toBe(now.round);
    expect(sample(text, "crowdtrain_committed_round")).toBe(now.round);
    expect(sample(text, "crowdtrain_rounds_aborted_total", { cause: "departure" })).toBe(1);
    expect(total(text, "crowdtrain_rounds_aborted_total")).toBe(1);
    expect(sample(text, "crowdtrain_rounds_aborted_total", { cause: "deadline" })).toBe(0);
    expect(sample(text, "crowdtrain_round_duration_seconds_count")).toBe(now.round);
    expect(sample(text, "crowdtrain_round_phase_seconds_count", { phase: "all-reduce" })).toBe(now.round);
    expect(sample(text, "crowdtrain_round_phase_seconds_sum", { phase: "compute" })).toBeCloseTo(now.round * SCRIPTED_COMPUTE_S, 9);
    expect(sample(text, "crowdtrain_worker_sent_bytes_total")).toBe(reports * SCRIPTED_BYTES_PER_REPORT);
    expect(sample(text, "crowdtrain_worker_received_bytes_total")).toBe(reports * SCRIPTED_BYTES_PER_REPORT);

    // a (cpu) is in the next round; the wasm tab is joining; b is gone; empty pairs read 0.
    expect(total(text, "crowdtrain_peers", { backend: "cpu" })).toBe(1);
    expect(sample(text, "crowdtrain_peers", { backend: "cpu", state: "training" })).toBe(1);
    expect(sample(text, "crowdtrain_peers", { backend: "wasm", state: "joining" })).toBe(1);
    expect(sample(text, "crowdtrain_peers", { backend: "webgpu", state: "ready" })).toBe(0);
    expect(total(text, "crowdtrain_peers")).toBe(now.peers.filter((p) => p.state !== "gone").length);

    const latest = now.accuracy.at(-1)!;
    expect(sample(text, "crowdtrain_eval_round")).toBe(3);
    expect(sample(text, "crowdtrain_eval_accuracy_ratio")).toBeCloseTo(latest.accuracy, 12);
    expect(sample(text, "crowdtrain_eval_loss")).toBeCloseTo(latest.loss, 9);
    const checkpoints = now.events.filter((e) => e.kind === "checkpoint" && /written/.test(e.text)).length;
    expect(checkpoints).toBeGreaterThan(0);
    expect(sample(text, "crowdtrain_checkpoint_write_duration_seconds_count")).toBe(checkpoints);
    expect(sample(text, "crowdtrain_checkpoint_failures_total")).toBe(0);

    expect(sample(text, "crowdtrain_rejected_messages_total", { channel: "socket", reason: "malformed" })).toBe(1);
    expect(sample(text, "crowdtrain_rejected_messages_total", { channel: "socket", reason: "protocol" })).toBe(1);
    expect(sample(text, "crowdtrain_rejected_messages_total", { channel: "upload", reason: "unauthorized" })).toBe(1);
    expect(sample(text, "crowdtrain_rejected_messages_total", { channel: "socket", reason: "too-large" })).toBe(1);
    expect(total(text, "crowdtrain_rejected_messages_total")).toBe(4);

    // The process metrics share the registry; nothing in the scrape names a volunteer or a secret.
    expect(sample(text, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    for (const secret of [a.peerId, b.peerId, wasmId, a.identity!.sessionToken, server.training!.adminToken]) expect(text).not.toContain(secret);

    expect(promtool(text)).toEqual({ status: 0, output: "" });
    [a, wasm].forEach((w) => w.close());
  }, TEST_TIMEOUT_MS);
});
