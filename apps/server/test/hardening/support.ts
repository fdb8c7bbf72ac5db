// Shared by the hardening tests (regressions, fuzz, load): a small job and its dataset, servers
// started in-process on loopback, and raw WebSocket / HTTP probes where every wait has a named
// timeout. Nothing here talks to anything but 127.0.0.1.
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseJob, parseStatus, type Job, type Status } from "@crowdtrain/protocol";
import { buildMnistDataset } from "@crowdtrain/training/node";
import WebSocket from "ws";
import { startServer, type ServerHandle, type ServerOptions } from "../../src/server.ts";
import type { TrainingOptions } from "../../src/training/service.ts";

/** How long one HTTP request may take on loopback, from connecting to the end of the answer. */
export const REQUEST_TIMEOUT_MS = 5_000;
/** How long a WebSocket handshake, an expected message or an expected close may take. */
export const WS_TIMEOUT_MS = 5_000;
/** Largest close reason RFC 6455 allows, in UTF-8 bytes. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** A model small enough that every state upload is ~50 KB and every round is instant. */
export const smallJob: Job = parseJob({
  name: "hardening",
  dataset: "mnist",
  model: { kind: "mlp", hidden: [8] },
  optimizer: { kind: "sgd", learningRate: 0.1, momentum: 0.5 },
  batchSize: 20,
  rounds: 1_000,
  evalEveryRounds: 1_000,
  // Scripted workers apply made-up gradients: a spot check would (rightly) fail them (audits.test.ts turns it on).
  spotCheck: 0,
});

/** A datasets directory with the mnist dataset, built once per test file. */
export async function buildDatasets(): Promise<{ dir: string; remove(): void }> {
  const dir = mkdtempSync(join(tmpdir(), "crowdtrain-hardening-"));
  await buildMnistDataset(join(dir, "mnist"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Servers started by a test file, closed in its afterAll. */
export class Servers {
  private readonly open: ServerHandle[] = [];

  constructor(private readonly datasetsDir: () => string) {}

  async start(training: Partial<TrainingOptions> | undefined, options: Omit<ServerOptions, "training"> = {}): Promise<ServerHandle> {
    const handle = await startServer({
      port: 0,
      host: "127.0.0.1",
      ...options,
      training: training === undefined ? undefined : { job: smallJob, datasetsDir: this.datasetsDir(), minWorkers: 1, ...training },
    });
    this.open.push(handle);
    return handle;
  }

  async stop(handle: ServerHandle): Promise<void> {
    const at = this.open.indexOf(handle);
    if (at >= 0) this.open.splice(at, 1);
    await handle.close();
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.open.splice(0).map((handle) => handle.close()));
  }
}

/** Rejects after `ms` naming `what`, else settles like `promise`. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_done, fail) => {
    timer = setTimeout(() => fail(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** Polls `check` every `intervalMs` until it holds; fails after `timeoutMs` naming `what`. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = WS_TIMEOUT_MS, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not true within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

export type Answer = { status: number; headers: Headers; text: string; ms: number };

/** One HTTP request with a named timeout; the whole body is read as text. */
export async function request(url: string, init: RequestInit = {}, timeoutMs = REQUEST_TIMEOUT_MS): Promise<Answer> {
  const started = performance.now();
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, ms: performance.now() - started };
}

/** Traces of a stack or of the server's files in an error body. */
const LEAK_PATTERN = /\bat [\w.<>]+ \(|node_modules|\/work\/|\.ts:\d+|\.js:\d+|<html|<!DOCTYPE/i;

/** The answer is a clear client error: 4xx, JSON `{ error: string }`, no HTML, stack or file path. */
export function clientErrorProblem(answer: Answer, method = "GET"): string | undefined {
  if (answer.status < 400 || answer.status > 499) return `status ${answer.status}, expected a 4xx`;
  if (method === "HEAD") return undefined;
  const type = answer.headers.get("content-type") ?? "";
  if (!type.startsWith("application/json")) return `content-type ${JSON.stringify(type)}, expected application/json (body ${JSON.stringify(answer.text.slice(0, 200))})`;
  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch {
    return `body is not JSON: ${JSON.stringify(answer.text.slice(0, 200))}`;
  }
  if (typeof body !== "object" || body === null || typeof (body as { error?: unknown }).error !== "string") {
    return `body has no "error" string: ${answer.text.slice(0, 200)}`;
  }
  if ((body as { error: string }).error.length === 0) return "empty error message";
  if (LEAK_PATTERN.test(answer.text)) return `body leaks a stack, a path or HTML: ${answer.text.slice(0, 300)}`;
  return undefined;
}

/** /api/health answers ok and /api/status parses with the protocol's schema. */
export async function expectAlive(url: string): Promise<Status> {
  const health = await request(`${url}/api/health`);
  if (health.status !== 200 || JSON.parse(health.text).ok !== true) throw new Error(`/api/health answered ${health.status} ${health.text}`);
  const status = await request(`${url}/api/status`);
  if (status.status !== 200) throw new Error(`/api/status answered ${status.status}`);
  return parseStatus(JSON.parse(status.text));
}

export const wsUrl = (url: string, path: string): string => `${url.replace(/^http/, "ws")}${path}`;

export type Closed = { code: number; reason: string; reasonBytes: number; reasonRaw: Buffer };
export type Opened = { ok: true; ws: WebSocket; messages: string[]; closed: Promise<Closed> } | { ok: false; status: number; body: string };

/**
 * Opens a WebSocket: either it opens (every text message it receives is collected, and `closed`
 * settles with the close code and reason) or the handshake is answered with an HTTP status.
 */
export function connect(url: string, headers: Record<string, string> = {}, timeoutMs = WS_TIMEOUT_MS): Promise<Opened> {
  return new Promise((done, fail) => {
    const ws = new WebSocket(url, { headers });
    const messages: string[] = [];
    let closedResolve!: (closed: Closed) => void;
    const closed = new Promise<Closed>((resolve) => (closedResolve = resolve));
    ws.on("message", (data: Buffer) => messages.push(data.toString()));
    ws.on("close", (code: number, reason: Buffer) => closedResolve({ code, reason: reason.toString(), reasonBytes: reason.length, reasonRaw: reason }));
    const timer = setTimeout(() => {
      ws.terminate();
      fail(new Error(`no handshake answer from ${url.slice(0, 120)} within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once("open", () => {
      clearTimeout(timer);
      done({ ok: true, ws, messages, closed });
    });
    ws.once("unexpected-response", (req, res) => {
      clearTimeout(timer);
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => done({ ok: false, status: res.statusCode ?? 0, body }));
      res.on("error", () => done({ ok: false, status: res.statusCode ?? 0, body }));
      req.on("error", () => {
        // ws aborts the request after an unexpected response; the status is the answer.
      });
    });
    ws.on("error", (error) => {
      clearTimeout(timer);
      // After 'unexpected-response' ws reports the aborted request too: that one was answered.
      if (!/Unexpected server response/.test(error.message)) fail(error);
    });
  });
}

/** Waits for the server to close `closed`'s socket. */
export function closeOf(closed: Promise<Closed>, what: string, timeoutMs = WS_TIMEOUT_MS): Promise<Closed> {
  return withTimeout(closed, timeoutMs, `the server closing ${what}`);
}

/** Polls the collected messages for the first one of `type`. */
export async function nextMessage(messages: string[], type: string, timeoutMs = WS_TIMEOUT_MS): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await until(
    () => {
      const index = messages.findIndex((m) => (JSON.parse(m) as { type?: unknown }).type === type);
      if (index < 0) return false;
      found = JSON.parse(messages.splice(index, 1)[0] as string) as Record<string, unknown>;
      return true;
    },
    `a ${type} message`,
    timeoutMs,
    5,
  );
  return found as Record<string, unknown>;
}

/** A raw HTTP request whose body the test writes piece by piece (uploads that stall or never end). */
export function rawRequest(
  url: string,
  options: { method: string; path: string; headers: Record<string, string | number> },
): { req: http.ClientRequest; response: Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> } {
  const target = new URL(url);
  const req = http.request({ host: target.hostname, port: target.port, method: options.method, path: options.path, headers: options.headers, agent: false });
  const response = new Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }>((done, fail) => {
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => done({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on("error", fail);
    });
    req.on("error", fail);
  });
  return { req, response };
}

/** Measures the event loop's worst stall while `during` runs: a 10 ms timer that reports how late it fired. */
export async function maxEventLoopStall<T>(during: () => Promise<T>): Promise<{ result: T; stallMs: number }> {
  let stallMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last - 10);
    last = now;
  }, 10);
  try {
    const result = await during();
    return { result, stallMs };
  } finally {
    clearInterval(timer);
  }
}
