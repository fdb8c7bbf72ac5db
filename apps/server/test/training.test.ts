import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { parseCoordinatorMessage, parseJob, PROTOCOL_VERSION, type CoordinatorMessage, type WorkerMessage } from "@crowdtrain/protocol";
import { createOptimizer, decodeState, encodeState, hashWeights } from "@crowdtrain/training";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startServer, type ServerHandle } from "../src/server.ts";
import type { Status } from "../src/training/status.ts";

const status = async (): Promise<Status> => (await (await fetch(`${server.url}/api/status`)).json()) as Status;

/** Every wait on the server in this file. */
const WAIT_MS = 10_000;

const job = parseJob({
  name: "server-test",
  dataset: "mnist",
  model: { kind: "mlp", hidden: [8] },
  optimizer: { kind: "sgd", learningRate: 0.1 },
  batchSize: 20,
  rounds: 3,
  evalEveryRounds: 1,
});

let datasets: string;
let server: ServerHandle;

beforeAll(async () => {
  await tf.setBackend("cpu");
  datasets = mkdtempSync(join(tmpdir(), "crowdtrain-datasets-"));
  await buildMnistDataset(join(datasets, "mnist"));
  server = await startServer({ port: 0, training: { job, datasetsDir: datasets, minWorkers: 2 } });
}, 60_000);

afterAll(async () => {
  await server?.close();
  rmSync(datasets, { recursive: true, force: true });
});

/**
 * A worker without a browser: speaks the protocol and applies a made-up gradient with the real
 * optimizer, so the server's state checks, commits and uploads are exercised for real.
 */
class FakeWorker {
  readonly inbox: CoordinatorMessage[] = [];
  private readonly ws: WebSocket;
  private weights: Float32Array = new Float32Array(0);
  private waiters: (() => void)[] = [];

  constructor(
    readonly peerId: string,
    private readonly url = server.url,
  ) {
    this.ws = new WebSocket(`${url.replace("http", "ws")}/ws`);
    this.ws.on("message", (data: Buffer) => {
      this.inbox.push(parseCoordinatorMessage(data.toString()));
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  async open(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
    this.send({ type: "hello", protocol: PROTOCOL_VERSION, peerId: this.peerId, backend: "cpu" });
  }

  send(message: WorkerMessage): void {
    this.ws.send(JSON.stringify(message));
  }

  async next<T extends CoordinatorMessage["type"]>(type: T): Promise<Extract<CoordinatorMessage, { type: T }>> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const index = this.inbox.findIndex((m) => m.type === type);
      if (index >= 0) return this.inbox.splice(index, 1)[0] as Extract<CoordinatorMessage, { type: T }>;
      if (Date.now() > deadline) throw new Error(`${this.peerId}: no ${type} within ${WAIT_MS} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  async sync(): Promise<void> {
    const response = await fetch(`${this.url}/api/state`);
    expect(response.ok).toBe(true);
    const state = decodeState(new Uint8Array(await response.arrayBuffer()));
    this.weights = state.weights;
    this.send({ type: "ready", round: state.round, hash: state.hash });
  }

  /** Applies the same pseudo-gradient every peer would get from the all-reduce (plain SGD has no state to carry), reports the hash. */
  step(attempt: number, round: number): { hash: string; bytes: Uint8Array<ArrayBuffer> } {
    const optimizer = createOptimizer(job.optimizer, this.weights.length);
    const gradient = new Float32Array(this.weights.length).fill(round / 100);
    optimizer.step(this.weights, gradient);
    const hash = hashWeights(this.weights);
    this.send({ type: "result", attempt, hash, samples: 10, loss: 2 - round / 10, timings: { computeMs: 5, readbackMs: 1, allReduceMs: 2, updateMs: 1 }, bytesSent: 100, bytesReceived: 100 });
    return { hash, bytes: encodeState({ round, hash, weights: this.weights, optimizer: optimizer.state() }) };
  }

  close(): void {
    this.ws.close();
  }
}

describe("the training server", () => {
  it("runs rounds for two protocol-speaking workers, takes the uploaded state, evaluates, and exports a loadable model", async () => {
    const a = new FakeWorker("a");
    const b = new FakeWorker("b");
    await Promise.all([a.open(), b.open()]);
    const welcome = await a.next("welcome");
    expect(welcome.job.name).toBe("server-test");
    await b.next("welcome");
    await Promise.all([a.sync(), b.sync()]);
    for (let round = 1; round <= 3; round++) {
      const [ra, rb] = await Promise.all([a.next("round"), b.next("round")]);
      expect(ra.ring).toEqual(["a", "b"]);
      if (round === 1) {
        a.send({ type: "phase", attempt: ra.attempt, phase: "reducing" });
        await expect.poll(async () => (await status()).peers.find((p) => p.id === "a")?.state, { timeout: WAIT_MS }).toBe("reducing");
        expect((await status()).peers.find((p) => p.id === "b")?.state).toBe("training");
      }
      expect([...ra.lease, ...rb.lease].sort((x, y) => x - y)).toHaveLength(20);
      const uploader = ra.upload ? a : b;
      const sa = a.step(ra.attempt, ra.round);
      b.step(rb.attempt, rb.round);
      const commit = await uploader.next("commit");
      expect(commit.hash).toBe(sa.hash);
      await (uploader === a ? b : a).next("commit");
      const put = await fetch(`${server.url}/api/state/${round}`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: sa.bytes });
      expect(put.status).toBe(204);
    }
    await a.next("stop");
    await expect.poll(async () => (await status()).accuracy.length, { timeout: WAIT_MS }).toBe(3);
    const final = await status();
    expect(final).toMatchObject({ status: "done", round: 3, stateRound: 3 });
    expect(final.peers.map((p) => p.id).sort()).toEqual(["a", "b"]);
    expect(final.loss).toHaveLength(3);

    // A state that does not hash to the committed one is refused with the reason.
    const size = decodeState(new Uint8Array(await (await fetch(`${server.url}/api/state`)).arrayBuffer())).weights.length;
    const bogus = encodeState({ round: 4, hash: "0000000000000000", weights: new Float32Array(size), optimizer: { kind: "sgd", step: 0, scalars: [], buffers: [new Float32Array(size)] } });
    const refused = await fetch(`${server.url}/api/state/4`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: bogus });
    expect(refused.status).toBe(409);

    const model = await tf.loadLayersModel(`${server.url}/api/model/model.json`);
    const probs = tf.tidy(() => (model.predict(tf.zeros([1, 28, 28, 1])) as tf.Tensor).sum().dataSync()[0]);
    expect(probs).toBeCloseTo(1, 4);
    model.dispose();
    a.close();
    b.close();
  }, 60_000);

  it("closes a socket that speaks nonsense, with the reason, and keeps serving", async () => {
    const ws = new WebSocket(`${server.url.replace("http", "ws")}/ws`);
    await new Promise((resolve) => ws.once("open", resolve));
    ws.send(JSON.stringify({ type: "hello", protocol: 999, peerId: "x", backend: "cpu" }));
    const [code, reason] = await new Promise<[number, string]>((resolve) => ws.once("close", (c, r) => resolve([c, r.toString()])));
    expect(code).toBe(1008);
    expect(reason).toMatch(/bad worker message/);
    expect((await fetch(`${server.url}/api/health`)).ok).toBe(true);
  });
});

describe("checkpoints across a restart", () => {
  it("a restarted server resumes at the last checkpoint: round, state, coverage and history", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "crowdtrain-data-"));
    const longJob = { ...job, rounds: 10 };
    const options = { job: longJob, datasetsDir: datasets, minWorkers: 1, dataDir, checkpointEveryRounds: 2 };
    try {
      const first = await startServer({ port: 0, training: options });
      const worker = new FakeWorker("solo", first.url);
      await worker.open();
      await worker.next("welcome");
      await worker.sync();
      for (let round = 1; round <= 3; round++) {
        const open = await worker.next("round");
        const { bytes } = worker.step(open.attempt, open.round);
        await worker.next("commit");
        const put = await fetch(`${first.url}/api/state/${round}`, { method: "PUT", headers: { "content-type": "application/octet-stream" }, body: bytes });
        expect(put.status).toBe(204);
      }
      const before = first.training!.status();
      expect(before.round).toBe(3);
      worker.close();
      await first.close(); // writes the round-3 checkpoint on the way out

      const second = await startServer({ port: 0, training: options });
      try {
        const after = second.training!.status();
        expect(after).toMatchObject({ round: 3, stateRound: 3, epoch: before.epoch, samplesSeen: before.samplesSeen });
        expect(after.loss).toEqual(before.loss);
        expect(after.events.some((e) => e.kind === "checkpoint" && /resumed/.test(e.text))).toBe(true);
        const state = decodeState(new Uint8Array(await (await fetch(`${second.url}/api/state`)).arrayBuffer()));
        expect(state.round).toBe(3);
        expect(state.hash).toBe(before.recentRounds.at(-1)?.hash);
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe("heartbeats", () => {
  it("a worker whose socket stops answering pings is dropped within the heartbeat timeout", async () => {
    const heartbeatTimeoutMs = 1_500;
    const quiet = await startServer({ port: 0, training: { job, datasetsDir: datasets, minWorkers: 5, heartbeatTimeoutMs } });
    try {
      // autoPong off: like a tab whose network went away without closing the connection.
      const ws = new WebSocket(`${quiet.url.replace("http", "ws")}/ws`, { autoPong: false });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, peerId: "mute", backend: "cpu" }));
      await expect.poll(() => quiet.training!.status().peers.some((p) => p.id === "mute" && p.state !== "gone"), { timeout: WAIT_MS }).toBe(true);
      const started = Date.now();
      await expect.poll(() => quiet.training!.status().peers.some((p) => p.id === "mute" && p.state !== "gone"), { timeout: WAIT_MS, interval: 100 }).toBe(false);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeLessThan(heartbeatTimeoutMs + 2_000);
      expect(quiet.training!.status().events.some((e) => e.kind === "heartbeat")).toBe(true);
      ws.terminate();
    } finally {
      await quiet.close();
    }
  }, 30_000);
});
