// A seeded fuzz suite against one in-process server on 127.0.0.1: malformed /ws messages, requests to
// every HTTP endpoint (predictions too), serve socket messages and frames, PeerJS handshakes and
// PeerJS messages after OPEN. After every batch of
// BATCH inputs the server must be alive (/api/health, /api/status parsing with the protocol's
// schema), within a stated memory bound, holding no leftover sockets or dashboards, and with no
// stack trace in its log; every rejection must be a clear error (a JSON 4xx, or a WebSocket close
// with a policy code and a reason). Rerun a failure with CROWDTRAIN_FUZZ_SEED=<the printed seed>.
import { mulberry32 } from "@crowdtrain/coordination";
import type WebSocket from "ws";
import { MAX_PREDICT_ROWS, parseServeTabMessage, parseWorkerMessage, PROTOCOL_VERSION, SERVE_FRAME_VERSION, SERVE_HEADER_BYTES } from "@crowdtrain/protocol";
import { afterAll, beforeAll, describe, expect, it, vi, type MockInstance } from "vitest";
import type { ServerHandle } from "../../src/server.ts";
import {
  buildDatasets,
  clientErrorProblem,
  closeOf,
  connect,
  expectAlive,
  MAX_CLOSE_REASON_BYTES,
  nextMessage,
  request,
  Servers,
  until,
  wsUrl,
  type Answer,
  type Closed,
} from "./support.ts";

const SEED = Number(process.env.CROWDTRAIN_FUZZ_SEED ?? 20261130) >>> 0;
/** Inputs between two health checks. */
const BATCH = 100;
/** Inputs in flight at once (each its own socket or request). */
const CONCURRENCY = 6;
/** The process may grow by this much over the whole suite (it hosts the server). */
const RSS_BOUND_BYTES = 200 * 2 ** 20;
/** Largest /ws message the hub accepts (hub.ts MAX_WORKER_MESSAGE_BYTES); larger ones are closed 1009. */
const MAX_WS_MESSAGE_BYTES = 16 * 1024;
/** The fuzz job's MNIST input: floats per row of POST /api/predict. */
const FEATURES = 784;
/** Largest message on the serve socket (serving/pool.ts MAX_TAB_MESSAGE_BYTES); larger ones are closed 1009. */
const MAX_SERVE_MESSAGE_BYTES = 8 * 1024 * 1024;
/** Largest PeerJS message (peer-server.ts PEER_MAX_MESSAGE_BYTES). */
const MAX_PEER_MESSAGE_BYTES = 64 * 1024;
/** A GET /api/state for a round not committed yet waits for its upload; the fuzzer stops waiting after this. */
const PENDING_STATE_WAIT_MS = 300;
/** How long sockets and dashboards of a batch may take to be released after it ended. */
const RELEASE_TIMEOUT_MS = 3_000;
/** The whole suite's bound. */
const SUITE_TIMEOUT_MS = 90_000;

// ---- seeded randomness (the coordinator's own PRNG) ----

class Fuzz {
  constructor(readonly random: () => number) {}
  int(max: number): number {
    return Math.floor(this.random() * max);
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  string(maxLength = 40): string {
    const alphabets = ["abcdefghijklmnopqrstuvwxyz0123456789", "\"\\/{}[]:,'`<>&%$#@!\u0000\u001f\n\r\t ", "éüñ€😀漢字\u200b\u202e\ufeff\ud83d", "w-0123456789abcdef"];
    const alphabet = [...this.pick(alphabets)];
    let out = "";
    const length = this.int(maxLength + 1);
    for (let k = 0; k < length; k++) out += this.pick(alphabet);
    return out;
  }
  number(): number {
    return this.pick([0, -0, 1, -1, 0.5, 2 ** 24, 2 ** 24 + 1, 2 ** 32, 4294967295, 4294967296, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, 1e308, 1.7e308, -1e308, 5e-324, this.random() * 1e6, this.int(1000)]);
  }
  json(depth = 0): unknown {
    const kind = this.int(depth > 3 ? 4 : 7);
    switch (kind) {
      case 0:
        return null;
      case 1:
        return this.chance(0.5);
      case 2:
        return this.number();
      case 3:
        return this.string();
      case 4:
        return Array.from({ length: this.int(4) }, () => this.json(depth + 1));
      case 5: {
        const out: Record<string, unknown> = {};
        for (let k = this.int(5); k > 0; k--) out[this.pick(["type", "protocol", "round", "hash", "attempt", this.string(8)])] = this.json(depth + 1);
        return out;
      }
      default:
        return this.string(200);
    }
  }
  bytes(length: number): Buffer {
    const out = Buffer.alloc(length);
    for (let k = 0; k < length; k++) out[k] = this.int(256);
    return out;
  }
}

const fuzz = new Fuzz(mulberry32(SEED));
const failures: string[] = [];
/** Records a broken expectation with the seed and the input, so one run reports them all. */
function complain(what: string, input: string, problem: string): void {
  failures.push(`${what} (seed ${SEED}): ${problem}\n    input: ${input.slice(0, 300)}`);
}

/** Runs `count` inputs, CONCURRENCY at a time. */
async function inParallel(count: number, one: (k: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) await one(next++);
    }),
  );
}

// ---- the server ----

let datasets: Awaited<ReturnType<typeof buildDatasets>>;
const servers = new Servers(() => datasets.dir);
let server: ServerHandle;
let rssStart = 0;
let logSpy: MockInstance<(...args: unknown[]) => void>;
const counts: Record<string, number> = {};

beforeAll(async () => {
  datasets = await buildDatasets();
  // No round ever opens (it waits for 10,000 workers): every message meets the idle coordinator.
  server = await servers.start({ minWorkers: 10_000, maxMembers: 5_000, hellosPerSecond: 1_000_000, adminToken: "fuzz-admin-token" }, { lab: true });
  logSpy = vi.spyOn(console, "error").mockImplementation(() => undefined);
  rssStart = process.memoryUsage().rss;
  console.log(`[fuzz] seed ${SEED} (set CROWDTRAIN_FUZZ_SEED to replay)`);
}, 120_000);

afterAll(async () => {
  logSpy?.mockRestore();
  await servers.closeAll();
  datasets?.remove();
  console.log(`[fuzz] inputs: ${JSON.stringify(counts)}, RSS growth ${((process.memoryUsage().rss - rssStart) / 2 ** 20).toFixed(0)} MiB`);
});

/** The checks after every batch: alive, status parses, memory bounded, nothing left open, no stack in the log. */
async function afterBatch(label: string): Promise<void> {
  await expectAlive(server.url);
  const rss = process.memoryUsage().rss;
  if (rss - rssStart > RSS_BOUND_BYTES) complain(label, "", `RSS grew by ${((rss - rssStart) / 2 ** 20).toFixed(0)} MiB, bound ${RSS_BOUND_BYTES / 2 ** 20} MiB`);
  await until(() => server.training!.hub.connections === 0, `${label}: worker sockets released`, RELEASE_TIMEOUT_MS).catch((error: Error) =>
    complain(label, "", error.message),
  );
  await until(() => server.training!.stream.size === 0, `${label}: dashboards released`, RELEASE_TIMEOUT_MS).catch((error: Error) => complain(label, "", error.message));
  for (const call of logSpy.mock.calls.splice(0)) {
    const line = call.map(String).join(" ");
    if (/\n\s+at |\bat .*\.[jt]s:\d+:\d+/.test(line)) complain(label, "", `a stack trace in the log: ${line.slice(0, 300)}`);
  }
}

/** A close is a clear refusal: the expected code, and for 1008 a reason that fits and is whole UTF-8. */
function closeProblem(closed: Closed, expectedCode: number): string | undefined {
  if (closed.code !== expectedCode) return `closed ${closed.code} "${closed.reason}", expected ${expectedCode}`;
  if (expectedCode !== 1008) return undefined;
  if (closed.reason.length === 0) return "closed 1008 without a reason";
  if (closed.reasonBytes > MAX_CLOSE_REASON_BYTES) return `a close reason of ${closed.reasonBytes} bytes`;
  if (!isUtf8(closed.reasonRaw)) return `a close reason that is not whole UTF-8: ${closed.reasonRaw.toString("hex")}`;
  return undefined;
}

// ---- /ws ----

type WsInput = { frame: string | Buffer; binary: boolean; note: string };

const validWorkerMessages = (): Record<string, unknown>[] => [
  { type: "hello", protocol: PROTOCOL_VERSION, backend: "cpu", name: "fuzz", joinToken: "not-required-here", role: "trainer", memoryMiB: 4096 },
  { type: "ready", round: 0, hash: "ab".repeat(32) },
  { type: "result", attempt: 1, hash: "cd".repeat(32), samples: 10, loss: 1.5, timings: { computeMs: 1, readbackMs: 1, allReduceMs: 1, updateMs: 1, stageBusyMs: 1 }, bytesSent: 1, bytesReceived: 1, clipped: ["w-0123456789abcdef01234567"], layerHashes: ["12".repeat(32)] },
  { type: "failed", attempt: 1, code: "timeout", suspect: "w-0123456789abcdef01234567", message: "fuzz" },
  { type: "phase", attempt: 1, phase: "reducing", digest: "ef".repeat(32) },
];

/** Replaces, removes or adds one field at any depth of a valid message. */
function mutate(message: Record<string, unknown>): Record<string, unknown> {
  const copy = structuredClone(message);
  let target: Record<string, unknown> = copy;
  if (typeof copy.timings === "object" && fuzz.chance(0.3)) target = copy.timings as Record<string, unknown>;
  const keys = Object.keys(target);
  switch (fuzz.int(4)) {
    case 0:
      delete target[fuzz.pick(keys)];
      break;
    case 1:
      target[fuzz.string(10) || "extra"] = fuzz.json();
      break;
    default:
      target[fuzz.pick(keys)] = fuzz.json();
  }
  return copy;
}

/** Every field of every valid message (timings' too), each replaced by a few random values. */
function everyFieldReplaced(): { input: WsInput; welcome: boolean }[] {
  const out: { input: WsInput; welcome: boolean }[] = [];
  for (const message of validWorkerMessages()) {
    const paths: string[][] = Object.keys(message).map((key) => [key]);
    if (typeof message.timings === "object") for (const key of Object.keys(message.timings as object)) paths.push(["timings", key]);
    for (const path of paths) {
      for (const value of [fuzz.json(), fuzz.number(), fuzz.string(30), null]) {
        const copy = structuredClone(message);
        let target: Record<string, unknown> = copy;
        for (const key of path.slice(0, -1)) target = target[key] as Record<string, unknown>;
        target[path.at(-1) as string] = value;
        out.push({ input: { frame: JSON.stringify(copy), binary: false, note: `${message.type}.${path.join(".")} replaced` }, welcome: message.type !== "hello" });
      }
    }
  }
  return out;
}

function wsInput(): WsInput {
  const kind = fuzz.int(10);
  const text = (value: unknown, note: string): WsInput => ({ frame: typeof value === "string" ? value : JSON.stringify(value), binary: false, note });
  switch (kind) {
    case 0:
      return text(fuzz.json(), "a random JSON value");
    case 1:
    case 2:
    case 3:
      return text(mutate(fuzz.pick(validWorkerMessages())), "a mutated valid message");
    case 4: {
      const base = fuzz.pick(validWorkerMessages());
      const size = fuzz.pick([1_000, 15_000, 16_300, 16_500, 40_000]);
      return text({ ...base, [fuzz.pick(["name", "hash", "message", "adapter", "pad"])]: fuzz.pick(["x", "é", "€", "😀"]).repeat(size / 2) }, `a huge string (~${size} bytes)`);
    }
    case 5: {
      const depth = fuzz.pick([10, 100, 1_000, 5_000]);
      return text(`${'{"type":"hello","name":'.repeat(1)}${"[".repeat(depth)}${"]".repeat(depth)}}`, `nesting ${depth} deep`);
    }
    case 6:
      return { frame: fuzz.bytes(1 + fuzz.int(64)), binary: false, note: "random bytes in a text frame" };
    case 7:
      return { frame: fuzz.chance(0.5) ? fuzz.bytes(fuzz.int(2_000)) : Buffer.from(JSON.stringify(fuzz.pick(validWorkerMessages()))), binary: true, note: "a binary frame" };
    case 8: {
      const valid = JSON.stringify(fuzz.pick(validWorkerMessages()));
      return text(valid.slice(0, fuzz.int(valid.length)), "a truncated valid message");
    }
    default:
      return text(fuzz.string(300), "random text");
  }
}

const isUtf8 = (bytes: Buffer): boolean => {
  try {
    new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
};

/** What the server must do with a worker message: close with a code, or accept it (open socket). */
function expectedWs(input: WsInput, welcomed: boolean): { accept: true; hello: boolean } | { accept: false; code: number } {
  const bytes = typeof input.frame === "string" ? Buffer.from(input.frame) : input.frame;
  if (bytes.length > MAX_WS_MESSAGE_BYTES) return { accept: false, code: 1009 };
  if (!input.binary && !isUtf8(bytes)) return { accept: false, code: 1007 };
  if (input.binary) return { accept: false, code: 1008 };
  let type: string;
  try {
    type = parseWorkerMessage(bytes.toString("utf8")).type;
  } catch {
    return { accept: false, code: 1008 };
  }
  if (welcomed) return type === "hello" ? { accept: false, code: 1008 } : { accept: true, hello: false };
  return type === "hello" ? { accept: true, hello: true } : { accept: false, code: 1008 };
}

async function fuzzWs(input: WsInput, welcome: boolean): Promise<void> {
  const describeInput = `${input.note}: ${(typeof input.frame === "string" ? input.frame : input.frame.toString("hex")).slice(0, 200)}`;
  const opened = await connect(wsUrl(server.url, "/ws"));
  if (!opened.ok) return complain("/ws handshake", describeInput, `refused with ${opened.status}`);
  const { ws, messages, closed } = opened;
  try {
    if (welcome) {
      ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, backend: "cpu" }));
      await nextMessage(messages, "welcome");
    }
    ws.send(input.frame, { binary: input.binary });
    const expected = expectedWs(input, welcome);
    if (expected.accept) {
      if (expected.hello) await nextMessage(messages, "welcome");
      else {
        // A ready with a made-up hash is always answered with sync: proof the socket is still served.
        ws.send(JSON.stringify({ type: "ready", round: 0, hash: "ab".repeat(32) }));
        await nextMessage(messages, "sync");
      }
      return;
    }
    const problem = closeProblem(await closeOf(closed, describeInput), expected.code);
    if (problem !== undefined) complain("/ws", describeInput, problem);
  } catch (error) {
    complain("/ws", describeInput, String(error));
  } finally {
    ws.terminate();
  }
}

// ---- HTTP ----

/** encodeURIComponent, except that a lone surrogate (which it refuses) goes out as invalid UTF-8 escapes. */
function enc(text: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    return "%ED%A0%BD";
  }
}

type HttpInput = { method: string; path: string; headers: Record<string, string>; body?: Uint8Array; note: string; mayWait?: boolean };

function randomQuery(): string {
  const parts: string[] = [];
  for (let k = 1 + fuzz.int(3); k > 0; k--) {
    const key = fuzz.pick(["round", "round", "round[]", "round[a]", "Round", "r", "", "%", "round%5B%5D", "offset", "limit", "limit[]", "peer", enc(fuzz.string(6))]);
    const value = fuzz.pick(["", "0", "00", "0x0", "-1", "1e3", " 0", "%200", "99999999999", "4294967296", "NaN", "%ff", "%", "€", fuzz.string(12), String(fuzz.int(3))]);
    parts.push(fuzz.chance(0.1) ? key : `${key}=${value.includes("%") ? value : enc(value)}`);
  }
  return parts.join(fuzz.pick(["&", "&", ";", "&&"]));
}

function randomPath(): string {
  const segment = () =>
    fuzz.pick(["api", "state", "admin", "events", "model", "model.json", "weights.bin", "config", "status", "health", "peerjs", "id", "peers", "assets", "data", "mnist", "dashboard", "worker", "lab.html", "index.html", "..", "%2e%2e", "%00", "%ff", "%", ".", "", enc(fuzz.string(12)), "x".repeat(fuzz.pick([1, 300, 3_000]))]);
  const count = 1 + fuzz.int(5);
  return `/${Array.from({ length: count }, segment).join("/")}`;
}

function randomHeaders(identity: LabIdentity): Record<string, string> {
  const headers: Record<string, string> = {};
  if (fuzz.chance(0.7)) headers["content-type"] = fuzz.pick(["application/octet-stream", "application/octet-stream; charset=utf-8", "application/json", "text/plain", "multipart/form-data; boundary=x", fuzz.string(20).replace(/[^\x20-\x7e]/g, "")]);
  if (fuzz.chance(0.3)) headers["content-encoding"] = fuzz.pick(["gzip", "deflate", "br", "identity", "x-unknown", ""]);
  if (fuzz.chance(0.6)) headers["x-crowdtrain-peer"] = fuzz.pick([identity.peerId, "w-000000000000000000000000", "", "../../etc/passwd", "x".repeat(500)]);
  if (fuzz.chance(0.6)) {
    headers.authorization = fuzz.pick([`Bearer ${identity.sessionToken}`, "Bearer ", `Bearer ${"A".repeat(32)}`, "Basic Zm9vOmJhcg==", `bearer ${identity.sessionToken}`, "Bearer fuzz-admin-token", fuzz.string(30).replace(/[^\x20-\x7e]/g, "")]);
  }
  if (fuzz.chance(0.1)) headers.origin = "https://evil.example";
  if (fuzz.chance(0.1)) headers.range = "bytes=0-10";
  return headers;
}

function randomBody(): Uint8Array | undefined {
  switch (fuzz.int(5)) {
    case 0:
      return undefined;
    case 1:
      return new TextEncoder().encode(JSON.stringify(fuzz.json()));
    case 2:
      return fuzz.bytes(fuzz.int(4_000));
    case 3: {
      // A state-looking prefix with random lengths.
      const bytes = fuzz.bytes(12 + fuzz.int(2_000));
      bytes.write("CTST", 0, "latin1");
      bytes.writeUInt32LE(fuzz.pick([2, 1, 0xffffffff]), 4);
      bytes.writeUInt32LE(fuzz.pick([0, 4, 400, 4096, 4100, 100 * 2 ** 20, 0xfffffffc]), 8);
      return bytes;
    }
    default:
      return fuzz.bytes(fuzz.pick([60_000, 120_000, 300_000]));
  }
}

type LabIdentity = { peerId: string; peerKey: string; peerToken: string; sessionToken: string };

const METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] as const;

/** The k-th input for `target`; the first few of each target go through every method once. */
function httpInput(target: string, identity: LabIdentity, k: number): HttpInput {
  const method = k < METHODS.length ? METHODS[k]! : fuzz.pick(["GET", ...METHODS]);
  const withBody = (m: string) => m !== "GET" && m !== "HEAD";
  switch (target) {
    case "state-get": {
      const query = randomQuery();
      // A plain positive round (not committed yet) is waited for, by design (bounded: STATE_WAIT_TIMEOUT_MS).
      const mayWait = /(^|[&;])round=0*[1-9][0-9]{0,9}([&;]|$)/.test(query) && !/(^|[&;])round=.*[&;]round=/.test(query);
      return { method: "GET", path: `/api/state?${query}`, headers: fuzz.chance(0.3) ? randomHeaders(identity) : {}, note: "GET /api/state", mayWait };
    }
    case "state-put":
    case "contribution-put": {
      const round = fuzz.pick(["0", "1", "2", "4294967295", "4294967296", "-1", "1.5", "0x1", "%20", enc(fuzz.string(8)), "99999999999999999999"]);
      const resource = target === "state-put" ? "state" : "contribution";
      return { method: fuzz.chance(0.9) ? "PUT" : method, path: `/api/${resource}/${round}`, headers: randomHeaders(identity), body: randomBody(), note: `PUT /api/${resource}/<r>` };
    }
    case "admin": {
      const action = fuzz.pick(["pause", "resume", "target", "check", "stop", "", "pause/x", fuzz.string(8).replace(/[^a-z]/g, "") || "zz"]);
      const headers: Record<string, string> = { "content-type": fuzz.pick(["application/json", "application/json", "text/plain", "application/x-www-form-urlencoded"]) };
      const token = fuzz.pick(["fuzz-admin-token", "fuzz-admin-token", "wrong-token", "", "fuzz-admin-tokem", `${"x".repeat(300)}`]);
      if (token !== "" || fuzz.chance(0.5)) headers.authorization = fuzz.pick([`Bearer ${token}`, token, `Basic ${token}`]);
      const body = fuzz.pick([
        () => JSON.stringify({ rounds: fuzz.pick([1_000, 0, -1, 1.5, null, "5", 1e308, 2 ** 53]) }),
        () => JSON.stringify({ reason: fuzz.pick(["fuzz", "", "€".repeat(2_000), 5]) }),
        () => JSON.stringify(fuzz.json()),
        () => fuzz.string(100),
        () => `{"rounds":${"[".repeat(500)}`,
        () => "x".repeat(5_000),
      ])();
      // A stop with the right token ends the job; the other inputs keep it running.
      const safe = action === "stop" && token === "fuzz-admin-token" ? "check" : action;
      return { method: fuzz.pick(["POST", "POST", "GET", method]), path: `/api/admin/${safe}`, headers, body: new TextEncoder().encode(body), note: "admin" };
    }
    case "predict":
      return { method: k < METHODS.length || fuzz.chance(0.1) ? method : "POST", ...predictRequest(), note: "POST /api/predict" };
    case "events":
      return { method: k < METHODS.length || fuzz.chance(0.3) ? method : "GET", path: `/api/events${fuzz.chance(0.5) ? `?${randomQuery()}` : ""}`, headers: fuzz.chance(0.3) ? { "last-event-id": fuzz.string(20).replace(/[^\x20-\x7e]/g, "") } : {}, note: "/api/events" };
    case "endpoints": {
      const path = fuzz.pick(["/api/config", "/api/model/model.json", "/api/model/weights.bin", "/api/health", "/api/status", "/api/peers", "/api/summary", "/api/lab/identity", "/", "/dashboard", "/data/mnist/manifest.json", "/peerjs", "/peerjs/", `/peerjs/${identity.peerKey}/id`, "/peerjs/peerjs/peers"]);
      const m = k < METHODS.length || fuzz.chance(0.4) ? method : "GET";
      return { method: m, path: `${path}${fuzz.chance(0.4) ? `?${randomQuery()}` : ""}`, headers: fuzz.chance(0.4) ? randomHeaders(identity) : {}, body: withBody(m) && fuzz.chance(0.5) ? randomBody() : undefined, note: "a known endpoint" };
    }
    default: {
      const m = method;
      return { method: m, path: randomPath(), headers: fuzz.chance(0.3) ? randomHeaders(identity) : {}, body: withBody(m) && fuzz.chance(0.3) ? randomBody() : undefined, note: "a random path" };
    }
  }
}

/** A prediction request: near-valid rows and shapes, NaN, wrong types and random bytes, in either form. */
function predictRequest(): { path: string; headers: Record<string, string>; body: Uint8Array } {
  const headers: Record<string, string> = {};
  const type = fuzz.pick(["application/json", "application/json", "application/octet-stream", "application/octet-stream", "application/json; charset=utf-8", "text/plain", ""]);
  if (type !== "") headers["content-type"] = type;
  if (type.startsWith("application/octet-stream") || fuzz.chance(0.2)) {
    headers["x-shape"] = fuzz.pick([`1,${FEATURES}`, `2,${FEATURES}`, `0,${FEATURES}`, `${MAX_PREDICT_ROWS + 1},${FEATURES}`, "1,10", `1,${FEATURES},1`, `-1,${FEATURES}`, " 1 , 784 ", fuzz.string(12).replace(/[^\x20-\x7e]/g, "")]);
  }
  const value = (): unknown => (fuzz.chance(0.97) ? fuzz.random() : fuzz.pick([null, "1", true, [], 1e308, -0, fuzz.json()]));
  const row = (): unknown[] => Array.from({ length: fuzz.pick([FEATURES, FEATURES, FEATURES - 1, FEATURES + 1, 0, 3]) }, value);
  const text = fuzz.pick([
    () => JSON.stringify({ inputs: [row()] }),
    () => JSON.stringify({ inputs: Array.from({ length: fuzz.int(4) }, row) }),
    () => JSON.stringify({ inputs: [row()], [fuzz.string(8) || "extra"]: fuzz.json() }),
    () => JSON.stringify(fuzz.json()),
    () => `{"inputs":[[${Array(FEATURES).fill(fuzz.pick(["NaN", "Infinity", "1e400", "-0"])).join(",")}]]}`,
    () => `{"inputs":${"[".repeat(500)}`,
    () => fuzz.string(200),
  ])();
  const floats = () => {
    const rows = fuzz.pick([1, 2, 3]);
    const out = new Float32Array(rows * FEATURES + fuzz.pick([0, 0, 0, 1, -1]));
    for (let k = 0; k < out.length; k++) out[k] = fuzz.chance(0.995) ? fuzz.random() : fuzz.pick([Number.NaN, Infinity, -Infinity]);
    return new Uint8Array(out.buffer);
  };
  const body = type.startsWith("application/octet-stream") && fuzz.chance(0.7) ? floats() : new TextEncoder().encode(text);
  return { path: "/api/predict", headers, body };
}

async function fuzzHttp(input: HttpInput): Promise<void> {
  const describeInput = `${input.note}: ${input.method} ${input.path.slice(0, 200)} ${JSON.stringify(input.headers).slice(0, 200)} body ${input.body?.byteLength ?? "none"}`;
  if (input.method === "GET" || input.method === "HEAD") input.body = undefined;
  const controller = new AbortController();
  const isEvents = input.path.startsWith("/api/events") && input.method === "GET";
  const waitMs = input.mayWait === true ? PENDING_STATE_WAIT_MS : 5_000;
  const timer = setTimeout(() => controller.abort(), waitMs);
  const started = performance.now();
  try {
    const response = await fetch(`${server.url}${input.path}`, { method: input.method, headers: input.headers, body: input.body, signal: controller.signal, redirect: "manual" });
    if (isEvents && response.status === 200) {
      // A stream: its first snapshot is enough; aborting must release the dashboard.
      const reader = response.body!.getReader();
      await reader.read();
      controller.abort();
      await reader.cancel().catch(() => undefined);
      return;
    }
    const text = input.method === "HEAD" ? "" : await response.text();
    const answer: Answer = { status: response.status, headers: response.headers, text, ms: performance.now() - started };
    // No tab serves the fuzz job and none can be moved (it has no trainer): a well-formed prediction
    // is refused at once with 503, Retry-After and a JSON error; anything else 5xx is a failure.
    if (input.path === "/api/predict" && answer.status === 503) {
      const problem = clientErrorProblem({ ...answer, status: 400 }, input.method) ?? (answer.headers.get("retry-after") === null ? "a 503 without Retry-After" : undefined);
      if (problem !== undefined) complain("http", describeInput, problem);
      return;
    }
    if (answer.status >= 500) return complain("http", describeInput, `answered ${answer.status}: ${text.slice(0, 200)}`);
    if (answer.status >= 400) {
      const problem = clientErrorProblem(answer, input.method);
      if (problem !== undefined) complain("http", describeInput, problem);
    }
    if (input.method === "PUT" && /^\/api\/(state|contribution)\//.test(input.path) && answer.status < 400) complain("http", describeInput, `an upload with made-up credentials was accepted (${answer.status})`);
  } catch (error) {
    const aborted = controller.signal.aborted;
    if (aborted && input.mayWait === true) return; // waiting for an upload that never comes: by design, bounded
    complain("http", describeInput, aborted ? `no answer within ${waitMs} ms` : String(error));
  } finally {
    clearTimeout(timer);
  }
}

// ---- /ws/serve ----

type ServeInput = { frame: string | Buffer; binary: boolean; note: string };

/** A serve-hello, a serve-loaded, or a reply frame, mutated; JSON, text and bytes at random. */
function serveInput(identity: { peerId: string; sessionToken: string }): ServeInput {
  const text = (frame: string, note: string): ServeInput => ({ frame, binary: false, note });
  const valid = [
    { type: "serve-hello", protocol: PROTOCOL_VERSION, peerId: identity.peerId, sessionToken: identity.sessionToken, maxBatch: 32 },
    { type: "serve-loaded", round: 0 },
  ];
  switch (fuzz.int(7)) {
    case 0:
      return text(JSON.stringify(mutate(fuzz.pick(valid))), "a mutated serve message");
    case 1:
      return text(JSON.stringify(fuzz.pick(valid)), "a valid serve message");
    case 2:
      return text(JSON.stringify(fuzz.json()), "random JSON");
    case 3:
      return { frame: Buffer.from([0xc3, 0x28, 0xa0, 0xa1]), binary: false, note: "text that is not UTF-8" };
    case 4: {
      // A reply frame's header (kind, version, reserved, id, rows, round) with random fields and payload.
      const frame = fuzz.bytes(SERVE_HEADER_BYTES + fuzz.pick([0, 4, 40, 4 * 10, 4 * 10 * 2, 1_000]));
      frame.writeUInt8(fuzz.pick([1, 2, 2, 3, 9]), 0);
      frame.writeUInt8(fuzz.chance(0.8) ? SERVE_FRAME_VERSION : fuzz.int(256), 1);
      if (fuzz.chance(0.8)) frame.writeUInt16LE(0, 2);
      frame.writeUInt32LE(fuzz.pick([0, 1, 2, 0xffffffff, fuzz.int(1_000)]), 4);
      frame.writeUInt32LE(fuzz.pick([0, 1, 2, MAX_PREDICT_ROWS + 1, 0xffffffff]), 8);
      return { frame, binary: true, note: "a reply frame" };
    }
    case 5:
      return { frame: fuzz.bytes(fuzz.int(SERVE_HEADER_BYTES * 2)), binary: true, note: "random bytes" };
    default:
      return text(fuzz.string(300), "random text");
  }
}

/** What the serve socket must do: close with a code, or (a serving member's serve-loaded) accept it. */
function expectedServe(input: ServeInput, welcomed: boolean): { accept: true; round: number } | { accept: false; code: number } {
  const bytes = typeof input.frame === "string" ? Buffer.from(input.frame) : input.frame;
  if (bytes.length > MAX_SERVE_MESSAGE_BYTES) return { accept: false, code: 1009 };
  if (!input.binary && !isUtf8(bytes)) return { accept: false, code: 1007 };
  // No request was sent to the tab: every reply frame names a request it does not hold.
  if (input.binary) return { accept: false, code: 1008 };
  try {
    const message = parseServeTabMessage(bytes.toString("utf8"));
    if (welcomed && message.type === "serve-loaded") return { accept: true, round: message.round };
  } catch {
    // Not a serve message: refused below.
  }
  // Before a welcome nothing is accepted: the fuzz identities are not serving members.
  return { accept: false, code: 1008 };
}

/**
 * One input on a serve socket: a stranger's (made-up identity), or a serving member's after its
 * welcome (it joined /ws with role "server"). Both sockets are closed after.
 */
async function fuzzServe(welcome: boolean): Promise<void> {
  let member: WebSocket | undefined;
  let identity = { peerId: "w-0123456789abcdef01234567", sessionToken: "A".repeat(32) };
  const label = welcome ? "/ws/serve after welcome" : "/ws/serve";
  try {
    if (welcome) {
      const joined = await connect(wsUrl(server.url, "/ws"));
      if (!joined.ok) return complain(label, "the member's /ws", `refused with ${joined.status}`);
      member = joined.ws;
      joined.ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, backend: "cpu", role: "server" }));
      identity = (await nextMessage(joined.messages, "welcome")).identity as typeof identity;
    }
    const input = serveInput(identity);
    const describeInput = `${input.note}: ${(typeof input.frame === "string" ? input.frame : input.frame.toString("hex")).slice(0, 200)}`;
    const opened = await connect(wsUrl(server.url, "/ws/serve"));
    if (!opened.ok) return complain(label, describeInput, `refused with ${opened.status}`);
    const { ws, messages, closed } = opened;
    try {
      if (welcome) {
        ws.send(JSON.stringify({ type: "serve-hello", protocol: PROTOCOL_VERSION, peerId: identity.peerId, sessionToken: identity.sessionToken, maxBatch: 32 }));
        await nextMessage(messages, "serve-welcome");
      }
      ws.send(input.frame, { binary: input.binary });
      const expected = expectedServe(input, welcome);
      if (expected.accept) {
        // Accepted: the pool now lists the tab at that round.
        await until(() => server.training!.serving!.status().tabs.some((t) => t.id === identity.peerId && t.round === expected.round), "the tab loaded at the pool");
        return;
      }
      const problem = closeProblem(await closeOf(closed, describeInput), expected.code);
      if (problem !== undefined) complain(label, describeInput, problem);
    } finally {
      ws.terminate();
    }
  } catch (error) {
    complain(label, "", String(error));
  } finally {
    member?.terminate();
  }
}

// ---- PeerJS ----

async function labIdentity(): Promise<LabIdentity> {
  const answer = await request(`${server.url}/api/lab/identity`, { method: "POST" });
  return JSON.parse(answer.text) as LabIdentity;
}

function handshakeQuery(identity: LabIdentity, other: LabIdentity): string {
  const values = {
    id: () => fuzz.pick([identity.peerId, other.peerId, "", "../../etc/passwd", "x".repeat(5_000), fuzz.string(30), "peerjs"]),
    key: () => fuzz.pick([identity.peerKey, "peerjs", "", fuzz.string(30)]),
    token: () => fuzz.pick([identity.peerToken, other.peerToken, "", fuzz.string(30)]),
  };
  const parts: string[] = [];
  for (const name of ["id", "key", "token"] as const) {
    for (let k = fuzz.pick([0, 1, 1, 1, 2]); k > 0; k--) parts.push(`${name}=${enc(values[name]())}`);
  }
  if (fuzz.chance(0.3)) parts.push(`${enc(fuzz.string(6))}=${enc(fuzz.string(10))}`);
  if (fuzz.chance(0.1)) parts.push(fuzz.pick(["%", "%zz", "&&", "id"]));
  for (let k = parts.length - 1; k > 0; k--) {
    const j = fuzz.int(k + 1);
    [parts[k], parts[j]] = [parts[j] as string, parts[k] as string];
  }
  return parts.join("&");
}

async function fuzzHandshake(identity: LabIdentity, other: LabIdentity): Promise<void> {
  const query = handshakeQuery(identity, other);
  const path = fuzz.chance(0.85) ? "/peerjs/peerjs" : fuzz.pick(["/peerjs", "/peerjs/", "/peerjs/peerjs/x", "/peerjs/id"]);
  const describeInput = `${path}?${query.slice(0, 300)}`;
  const headers: Record<string, string> = fuzz.chance(0.15) ? { origin: fuzz.pick(["https://evil.example", "null", server.url]) } : {};
  try {
    const opened = await connect(`${wsUrl(server.url, path)}?${query}`, headers);
    if (opened.ok) {
      // Only the issued triple, each given once, from an allowed origin, may open.
      const q = new URLSearchParams(query);
      const legit =
        path === "/peerjs/peerjs" &&
        q.getAll("id").length === 1 &&
        q.getAll("key").length === 1 &&
        q.getAll("token").length === 1 &&
        q.get("key") === identity.peerKey &&
        ((q.get("id") === identity.peerId && q.get("token") === identity.peerToken) || (q.get("id") === other.peerId && q.get("token") === other.peerToken)) &&
        headers.origin !== "https://evil.example" &&
        headers.origin !== "null";
      if (!legit) complain("peerjs handshake", describeInput, "opened");
      opened.ws.terminate();
      return;
    }
    if (![400, 403, 404].includes(opened.status)) complain("peerjs handshake", describeInput, `refused with ${opened.status}`);
  } catch (error) {
    complain("peerjs handshake", describeInput, String(error));
  }
}

function peerMessage(identity: LabIdentity, other: LabIdentity): { frame: string | Buffer; binary: boolean; note: string } {
  const dst = () => fuzz.pick([other.peerId, identity.peerId, "w-ffffffffffffffffffffffff", "", "x".repeat(200), fuzz.string(20)]);
  const templates = (): Record<string, unknown>[] => [
    { type: "HEARTBEAT" },
    { type: "OFFER", dst: dst(), payload: { type: "data", connectionId: "dc_fuzz", sdp: { type: "offer", sdp: "v=0" } } },
    { type: "ANSWER", dst: dst(), payload: { type: "data", connectionId: "dc_fuzz", sdp: { type: "answer", sdp: "v=0" } } },
    { type: "CANDIDATE", dst: dst(), payload: { type: "data", connectionId: "dc_fuzz", candidate: { candidate: "x" } } },
    { type: "LEAVE", dst: dst() },
    { type: fuzz.pick(["OPEN", "EXPIRE", "ID-TAKEN", "INVALID-KEY", "ERROR", "heartbeat", ""]), dst: dst() },
  ];
  switch (fuzz.int(7)) {
    case 0:
      return { frame: JSON.stringify(fuzz.json()), binary: false, note: "a random JSON value" };
    case 1:
    case 2: {
      const message = fuzz.pick(templates());
      const keys = Object.keys(message);
      if (fuzz.chance(0.7)) message[fuzz.pick([...keys, "src", "payload", fuzz.string(5)])] = fuzz.json();
      return { frame: JSON.stringify(message), binary: false, note: "a mutated PeerJS message" };
    }
    case 3:
      return { frame: JSON.stringify(fuzz.pick(templates())), binary: false, note: "a PeerJS message" };
    case 4:
      return { frame: fuzz.bytes(fuzz.int(3_000)), binary: fuzz.chance(0.5), note: "random bytes" };
    case 5:
      return { frame: JSON.stringify({ type: "OFFER", dst: dst(), payload: { type: "data", connectionId: "dc_big", sdp: "x".repeat(fuzz.pick([30_000, 65_400, 70_000])) } }), binary: false, note: "a large OFFER" };
    default:
      return { frame: fuzz.string(200), binary: false, note: "random text" };
  }
}

async function fuzzPeerMessage(other: LabIdentity): Promise<void> {
  const identity = await labIdentity();
  const input = peerMessage(identity, other);
  const bytes = typeof input.frame === "string" ? Buffer.from(input.frame) : input.frame;
  const describeInput = `${input.note}: ${(typeof input.frame === "string" ? input.frame : input.frame.toString("hex")).slice(0, 200)}`;
  const query = new URLSearchParams({ key: identity.peerKey, id: identity.peerId, token: identity.peerToken });
  const opened = await connect(`${wsUrl(server.url, "/peerjs/peerjs")}?${query.toString()}`);
  if (!opened.ok) return complain("peerjs", describeInput, `registration refused with ${opened.status}`);
  const { ws, messages, closed } = opened;
  try {
    await nextMessage(messages, "OPEN");
    ws.send(input.frame, { binary: input.binary });
    // A sentinel that is not JSON: whatever the input did, the socket must now be closed with a reason.
    ws.send("sentinel: not JSON");
    const expectedCode = bytes.length > MAX_PEER_MESSAGE_BYTES ? 1009 : !input.binary && !isUtf8(bytes) ? 1007 : 1008;
    const problem = closeProblem(await closeOf(closed, describeInput), expectedCode);
    if (problem !== undefined) complain("peerjs", describeInput, problem);
  } catch (error) {
    complain("peerjs", describeInput, String(error));
  } finally {
    ws.terminate();
  }
}

// ---- the suite ----

describe(`fuzzing the server (seed ${SEED})`, () => {
  it(
    "≥ 1,000 malformed inputs across /ws, every HTTP endpoint (POST /api/predict too), /ws/serve and PeerJS: the server stays up, bounded, and every rejection is a clear error",
    async () => {
      const started = Date.now();
      const run = async (label: string, total: number, one: (k: number) => Promise<void>) => {
        for (let done = 0; done < total; done += BATCH) {
          const size = Math.min(BATCH, total - done);
          await inParallel(size, (k) => one(done + k));
          counts[label] = (counts[label] ?? 0) + size;
          await afterBatch(`${label} inputs ${done}..${done + size}`);
        }
      };
      await run("ws before hello", 200, () => fuzzWs(wsInput(), false));
      await run("ws after welcome", 250, () => fuzzWs(wsInput(), true));
      const sweep = everyFieldReplaced();
      await run("ws every field replaced", sweep.length, (k) => fuzzWs(sweep[k]!.input, sweep[k]!.welcome));
      const identity = await labIdentity();
      const other = await labIdentity();
      for (const target of ["state-get", "state-put", "contribution-put", "endpoints", "random-path", "events", "admin", "predict"] as const) {
        const total = { "state-get": 100, "state-put": 150, "contribution-put": 100, endpoints: 100, "random-path": 150, events: 30, admin: 100, predict: 150 }[target];
        await run(`http ${target}`, total, (k) => fuzzHttp(httpInput(target, identity, k)));
      }
      await run("serve socket, a stranger", 100, () => fuzzServe(false));
      await run("serve socket, a serving member", 100, () => fuzzServe(true));
      await run("peerjs handshake", 100, () => fuzzHandshake(identity, other));
      await run("peerjs messages", 200, () => fuzzPeerMessage(other));
      const total = Object.values(counts).reduce((a, b) => a + b, 0);
      console.log(`[fuzz] ${total} inputs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
      expect(total).toBeGreaterThanOrEqual(1_000);
      // Every broken expectation of every batch, with the seed and the input that broke it.
      expect(failures.length, `${failures.length} inputs were mishandled (seed ${SEED}):\n${failures.slice(0, 40).join("\n")}`).toBe(0);
    },
    SUITE_TIMEOUT_MS,
  );
});
