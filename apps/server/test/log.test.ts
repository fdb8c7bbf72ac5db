import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { parseJob } from "@crowdtrain/protocol";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { describe, expect, it } from "vitest";
import { createLogger, format, levelOfKind } from "../src/log/logger.ts";
import { startServer, type ServerHandle } from "../src/server.ts";
import { ScriptedWorker } from "./support/scripted-worker.ts";

/** Every wait on the server in this file. */
const WAIT_MS = 10_000;
const AT = Date.UTC(2026, 11, 1, 12, 0, 0);
const JOB = parseJob({ name: "log-test", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1 }, batchSize: 20, rounds: 2, spotCheck: 0 });
/** A server on a built MNIST with a JSON logger into `lines`; closed (again, if `run` did) and cleaned up after. */
async function withLoggedServer(run: (server: ServerHandle, lines: string[]) => Promise<void>): Promise<void> {
  await tf.setBackend("cpu");
  const datasets = mkdtempSync(join(tmpdir(), "crowdtrain-datasets-"));
  const lines: string[] = [];
  try {
    await buildMnistDataset(join(datasets, "mnist"));
    const server = await startServer({ port: 0, training: { job: JOB, datasetsDir: datasets, minWorkers: 2 }, logger: createLogger({ format: "json", level: "info", write: (line) => lines.push(line) }) });
    try {
      await run(server, lines);
    } finally {
      await server.close();
    }
  } finally {
    rmSync(datasets, { recursive: true, force: true });
  }
}
const kinds = (lines: string[]): string[] => lines.map((line) => (JSON.parse(line) as { kind: string }).kind);

describe("the server's log", () => {
  it("writes one JSON object per line with time, level, kind and message", () => {
    const line = format({ at: AT, level: "warn", kind: "strike", text: 'peer-1: "bad" hash' }, "json");
    expect(JSON.parse(line)).toEqual({ time: "2026-12-01T12:00:00.000Z", level: "warn", kind: "strike", msg: 'peer-1: "bad" hash' });
  });

  it("keeps a text entry on one line, so a newline in a peer's words cannot forge another entry", () => {
    const line = format({ at: AT, level: "info", kind: "left", text: "peer-1: bye\n2026-12-01T12:00:00.000Z error forged: x" }, "text");
    expect(line.split("\n")).toHaveLength(1);
    expect(line).toBe("2026-12-01T12:00:00.000Z info  left: peer-1: bye 2026-12-01T12:00:00.000Z error forged: x");
  });

  it("drops entries below its level", () => {
    const lines: string[] = [];
    const logger = createLogger({ format: "text", level: "warn", write: (line) => lines.push(line) });
    for (const level of ["debug", "info", "warn", "error"] as const) logger.log({ at: AT, level, kind: "server", text: level });
    expect(lines.map((line) => line.split(" ").at(-1))).toEqual(["warn", "error"]);
  });

  it("ranks evictions, strikes and bans as warnings and everyday events as info", () => {
    expect(["evicted", "strike", "banned", "rejected"].map(levelOfKind)).toEqual(["warn", "warn", "warn", "warn"]);
    expect(["joined", "left", "epoch", "checkpoint"].map(levelOfKind)).toEqual(["info", "info", "info", "info"]);
    expect(levelOfKind("error")).toBe("error");
  });

  it("carries a running server's cluster events as JSON lines", () =>
    withLoggedServer(async (server, lines) => {
      const worker = await new ScriptedWorker(server.url).join();
      const joined = (): unknown => lines.map((line) => JSON.parse(line) as { kind: string; msg: string }).find((entry) => entry.kind === "joined");
      await expect.poll(joined, { timeout: WAIT_MS }).toMatchObject({ level: "info", msg: expect.stringContaining(worker.peerId) });
      worker.close();
      await expect.poll(() => kinds(lines), { timeout: WAIT_MS }).toContain("left");
    }), 60_000);

  it("records no departures while the server itself stops (they would fail pending spot checks and roll rounds back)", () =>
    withLoggedServer(async (server, lines) => {
      const workers = await Promise.all([new ScriptedWorker(server.url).join(), new ScriptedWorker(server.url).join()]);
      await expect.poll(() => kinds(lines).filter((kind) => kind === "joined").length, { timeout: WAIT_MS }).toBe(2);
      await server.close();
      await Promise.all(workers.map((worker) => worker.closedBy()));
      expect(kinds(lines)).not.toContain("left");
    }), 60_000);
});
