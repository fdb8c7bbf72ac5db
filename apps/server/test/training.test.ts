import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { parseJob, parseSummary, PROTOCOL_VERSION } from "@crowdtrain/protocol";
import { decodeState, encodeState } from "@crowdtrain/training";
import { describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startServer } from "../src/server.ts";
import type { Status } from "../src/training/status.ts";
import { useJobServer } from "./support/job-server.ts";
import { ScriptedWorker } from "./support/scripted-worker.ts";

const status = async (): Promise<Status> => (await (await fetch(`${host.server.url}/api/status`)).json()) as Status;

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
  // Scripted workers apply made-up gradients: a spot check would (rightly) fail them.
  spotCheck: 0,
});

const host = useJobServer({ job, minWorkers: 2 });

describe("the training server", () => {
  it("runs rounds for two protocol-speaking workers, takes the uploaded state, evaluates, and exports a loadable model", async () => {
    const [a, b] = await Promise.all([new ScriptedWorker(host.server.url).join(), new ScriptedWorker(host.server.url).join()]);
    expect(a.job?.name).toBe("server-test");
    expect(a.peerId).not.toBe(b.peerId);
    await Promise.all([a.sync(), b.sync()]);
    for (let round = 1; round <= 3; round++) {
      const [ra, rb] = await Promise.all([a.next("round"), b.next("round")]);
      expect(ra.plan).toEqual({ kind: "ring", members: [a.peerId, b.peerId] });
      if (round === 1) {
        a.send({ type: "phase", attempt: ra.attempt, phase: "reducing" });
        await expect.poll(async () => (await status()).peers.find((p) => p.id === a.peerId)?.state, { timeout: WAIT_MS }).toBe("reducing");
        expect((await status()).peers.find((p) => p.id === b.peerId)?.state).toBe("training");
      }
      expect([...ra.lease, ...rb.lease].sort((x, y) => x - y)).toHaveLength(20);
      const [uploader, other] = ra.upload ? [a, b] : [b, a];
      const sa = a.step(ra);
      b.step(rb);
      // Only the designated uploader may send the state, even the right bits.
      expect((await other.upload(round, encodeState(sa))).status).toBe(403);
      expect((await uploader.upload(round)).status).toBe(204);
      const commit = await uploader.next("commit");
      expect(commit.hash).toBe(sa.hash);
      uploader.adopt(commit);
      other.adopt(await other.next("commit"));
    }
    await a.next("stop");
    await expect.poll(async () => (await status()).accuracy.length, { timeout: WAIT_MS }).toBe(3);
    const final = await status();
    expect(final).toMatchObject({ status: "done", round: 3, stateRound: 3 });
    expect(final.peers.map((p) => p.id).sort()).toEqual([a.peerId, b.peerId].sort());
    expect(final.loss).toHaveLength(3);

    // The volunteer page's summary: the same job and progress, one member's row at most.
    const summary = parseSummary(await (await fetch(`${host.server.url}/api/summary?peer=${a.peerId}`)).json());
    expect(summary).toMatchObject({ status: "done", round: 3, targetRounds: 3, members: 2, samplesSeen: final.samplesSeen });
    expect(summary.loss.map(([round]) => round)).toEqual([1, 2, 3]);
    expect(summary.accuracy).toHaveLength(3);
    expect(summary.you?.share).toBe(final.peers.find((p) => p.id === a.peerId)?.share);
    expect(parseSummary(await (await fetch(`${host.server.url}/api/summary`)).json()).you).toBeUndefined();
    expect((await fetch(`${host.server.url}/api/summary?peer=..%2Fetc`)).status).toBe(400);

    const model = await tf.loadLayersModel(`${host.server.url}/api/model/model.json`);
    const probs = tf.tidy(() => (model.predict(tf.zeros([1, 28, 28, 1])) as tf.Tensor).sum().dataSync()[0]);
    expect(probs).toBeCloseTo(1, 4);
    model.dispose();
    a.close();
    b.close();
  }, 60_000);

  it("closes a socket that speaks nonsense, with the reason, and keeps serving", async () => {
    const ws = new WebSocket(`${host.server.url.replace("http", "ws")}/ws`);
    await new Promise((resolve) => ws.once("open", resolve));
    ws.send(JSON.stringify({ type: "hello", protocol: 999, backend: "cpu" }));
    const [code, reason] = await new Promise<[number, string]>((resolve) => ws.once("close", (c, r) => resolve([c, r.toString()])));
    expect(code).toBe(1008);
    expect(reason).toMatch(/bad worker message/);
    expect((await fetch(`${host.server.url}/api/health`)).ok).toBe(true);
  });
});

describe("checkpoints across a restart", () => {
  it("a restarted server resumes at the last checkpoint: round, state, coverage and history", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "crowdtrain-data-"));
    const longJob = { ...job, rounds: 10 };
    const options = { job: longJob, datasetsDir: host.datasets, minWorkers: 1, dataDir, checkpointEveryRounds: 2 };
    try {
      const first = await startServer({ port: 0, training: options });
      const worker = await new ScriptedWorker(first.url).join();
      await worker.sync();
      // A plan of one: the server checks the uploaded state before the round may commit.
      for (let round = 1; round <= 3; round++) await worker.honestRound();
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
    const quiet = await startServer({ port: 0, training: { job, datasetsDir: host.datasets, minWorkers: 5, heartbeatTimeoutMs } });
    try {
      // autoPong off: like a tab whose network went away without closing the connection.
      const ws = new WebSocket(`${quiet.url.replace("http", "ws")}/ws`, { autoPong: false });
      await new Promise((resolve, reject) => {
        ws.once("open", resolve);
        ws.once("error", reject);
      });
      ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, name: "mute", backend: "cpu" }));
      await expect.poll(() => quiet.training!.status().peers.some((p) => p.name === "mute" && p.state !== "gone"), { timeout: WAIT_MS }).toBe(true);
      const started = Date.now();
      await expect.poll(() => quiet.training!.status().peers.some((p) => p.name === "mute" && p.state !== "gone"), { timeout: WAIT_MS, interval: 100 }).toBe(false);
      const elapsed = Date.now() - started;
      expect(elapsed).toBeLessThan(heartbeatTimeoutMs + 2_000);
      expect(quiet.training!.status().events.some((e) => e.kind === "heartbeat")).toBe(true);
      ws.terminate();
    } finally {
      await quiet.close();
    }
  }, 30_000);

  it("a live socket stays past many timeouts, pinged only when it has been silent for half a check", async () => {
    const heartbeatTimeoutMs = 1_200;
    const server = await startServer({ port: 0, training: { job, datasetsDir: host.datasets, minWorkers: 5, heartbeatTimeoutMs } });
    try {
      const open = async (name: string): Promise<{ ws: WebSocket; pings: () => number }> => {
        const ws = new WebSocket(`${server.url.replace("http", "ws")}/ws`);
        let pings = 0;
        ws.on("ping", () => pings++);
        await new Promise((resolve, reject) => {
          ws.once("open", resolve);
          ws.once("error", reject);
        });
        ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, name, backend: "cpu" }));
        return { ws, pings: () => pings };
      };
      const [quiet, chatty] = await Promise.all([open("quiet"), open("chatty")]);
      // chatty says it holds round 0 every 50 ms (a harmless, valid message); quiet says nothing.
      const chatter = setInterval(() => chatty.ws.send(JSON.stringify({ type: "ready", round: 0, hash: "0".repeat(64) })), 50);
      await new Promise((resolve) => setTimeout(resolve, 3.5 * heartbeatTimeoutMs));
      clearInterval(chatter);
      const alive = server.training!.status().peers.filter((p) => p.state !== "gone").map((p) => p.name);
      expect(alive.sort()).toEqual(["chatty", "quiet"]);
      // Checked every 600 ms for 4.2 s, pinged after 300 ms of silence: quiet at about every check;
      // chatty, never silent that long, at most once (a client timer late under load).
      expect(quiet.pings()).toBeGreaterThanOrEqual(4);
      expect(chatty.pings()).toBeLessThanOrEqual(1);
      for (const { ws } of [quiet, chatty]) ws.terminate();
    } finally {
      await server.close();
    }
  }, 30_000);
});
