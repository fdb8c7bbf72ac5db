// Serving end to end on a real server: POST /api/predict (JSON and float32), the serve socket
// /ws/serve and the autoscaler, with the volunteer tabs played by hand over WebSocket (a member
// joined on /ws, and its serve socket answering request frames as the test says). Each fake tab
// answers row r with outputs[r][j] = 100 * inputs[r][0] + j, so a test can tell which request's
// rows came back to which HTTP request.
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MAX_PREDICT_BODY_BYTES, MAX_PREDICT_ROWS, parseJob, type PredictResponse, type ServeRequestFrame } from "@crowdtrain/protocol";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startServer, type ServerHandle } from "../src/server.ts";
import type { ServingOptions } from "../src/serving/pool.ts";
import type { TrainingOptions } from "../src/training/service.ts";
import { ScriptedWorker } from "./support/scripted-worker.ts";
import { Member, ServeTab, until, type Reply } from "./support/serve-tab.ts";
import { PredictClient, PredictError } from "@crowdtrain/serving/node";

/** The mnist fixture: 28 x 28 x 1 inputs, 10 classes. */
const FEATURES = 784;
const CLASSES = 10;
/** How long an HTTP request may take on loopback when nothing in the test holds it. */
const HTTP_TIMEOUT_MS = 5_000;

const job = parseJob({
  name: "serving-test",
  dataset: "mnist",
  model: { kind: "mlp", hidden: [8] },
  optimizer: { kind: "sgd", learningRate: 0.1 },
  batchSize: 20,
  rounds: 1_000,
  evalEveryRounds: 1_000,
  spotCheck: 0,
});

let datasets: string;
const servers: ServerHandle[] = [];
const sockets: { close(): void }[] = [];
/** Requests a test left in flight: settled (whatever the answer) before the next test. */
const inFlight: Promise<unknown>[] = [];

beforeAll(async () => {
  datasets = mkdtempSync(join(tmpdir(), "crowdtrain-serving-"));
  await buildMnistDataset(join(datasets, "mnist"));
}, 60_000);

afterAll(() => {
  rmSync(datasets, { recursive: true, force: true });
});

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.close();
  await Promise.all(servers.splice(0).map((server) => server.close()));
  await Promise.allSettled(inFlight.splice(0));
});

async function start(serving: ServingOptions = {}, training: Partial<TrainingOptions> = {}): Promise<ServerHandle> {
  const server = await startServer({ port: 0, training: { job, datasetsDir: datasets, minWorkers: 1, hellosPerSecond: 1_000, serving, ...training } });
  servers.push(server);
  return server;
}

/** A row of the model's width whose first number is `tag` (the fake tabs' answer depends on it). */
function row(tag: number): number[] {
  const values = new Array<number>(FEATURES).fill(0);
  values[0] = tag;
  values[FEATURES - 1] = 0.25;
  return values;
}

const expectedRow = (tag: number): number[] => Array.from({ length: CLASSES }, (_, j) => 100 * tag + j);

/** What an honest fake tab answers for a request frame. */
function outputsFor(request: Pick<ServeRequestFrame, "rows" | "inputs">): Float32Array {
  const outputs = new Float32Array(request.rows * CLASSES);
  for (let r = 0; r < request.rows; r++) for (let j = 0; j < CLASSES; j++) outputs[r * CLASSES + j] = 100 * (request.inputs[r * FEATURES] as number) + j;
  return outputs;
}

const echo = (request: ServeRequestFrame): Reply => ({ kind: "reply", outputs: outputsFor(request) });

const servingStatus = (server: ServerHandle) => {
  const status = server.training?.serving?.status();
  if (status === undefined) throw new Error("serving is off");
  return status;
};

async function member(server: ServerHandle, role?: "server"): Promise<Member> {
  const m = new Member(server.url, role);
  sockets.push(m);
  return m.join();
}

function tab(server: ServerHandle): ServeTab {
  const t = new ServeTab(server.url);
  sockets.push(t);
  return t;
}

/** A member joined with role "server", its serve socket welcomed and (unless told not to) loaded. */
async function servingTab(server: ServerHandle, options: { load?: boolean; answer?: ServeTab["answer"] } = {}): Promise<{ member: Member; tab: ServeTab }> {
  const m = await member(server, "server");
  const t = await tab(server).hello(m.identity!);
  if (options.answer !== undefined) t.answer = options.answer;
  if (options.load !== false) {
    t.loaded();
    // Taking requests once the server has read serve-loaded, so a test's requests do not race it.
    await until(() => servingStatus(server).tabs.some((v) => v.id === m.peerId && v.round !== undefined), "the tab loaded at the server");
  }
  return { member: m, tab: t };
}

type Answer = { status: number; headers: Headers; json: Record<string, unknown> };

async function predict(server: ServerHandle, body: unknown, headers: Record<string, string> = { "content-type": "application/json" }): Promise<Answer> {
  const response = await fetch(`${server.url}/api/predict`, {
    method: "POST",
    headers,
    body: typeof body === "string" || body instanceof Uint8Array ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, json: JSON.parse(text) as Record<string, unknown> };
}

/** A predict the test does not await yet; its promise is settled before the next test in any case. */
function predictLater(server: ServerHandle, body: unknown, headers?: Record<string, string>): Promise<Answer> {
  const answer = predict(server, body, headers);
  inFlight.push(answer);
  return answer;
}

const floatBody = (values: Float32Array): Uint8Array => new Uint8Array(values.buffer, values.byteOffset, values.byteLength);

async function health(server: ServerHandle): Promise<boolean> {
  const response = await fetch(`${server.url}/api/health`);
  return response.ok && ((await response.json()) as { ok: boolean }).ok;
}

/** POST /api/predict declaring a Content-Length, sending no body; resolves with the answer (node:http, so nothing fills the body in). */
function declaredOnly(server: ServerHandle, contentType: string, length: number, extra: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((done, fail) => {
    const request = http.request(`${server.url}/api/predict`, { method: "POST", headers: { "content-type": contentType, "content-length": String(length), ...extra } });
    const timer = setTimeout(() => {
      request.destroy();
      fail(new Error(`no answer to a declared ${length}-byte body within ${HTTP_TIMEOUT_MS} ms`));
    }, HTTP_TIMEOUT_MS);
    request.on("response", (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => {
        clearTimeout(timer);
        request.destroy();
        done({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString() });
      });
    });
    request.on("error", (error) => {
      clearTimeout(timer);
      fail(error);
    });
    request.flushHeaders();
  });
}

/** Two ready trainers in a paused job (no round opens, so they stay "ready" and may be moved). */
async function readyTrainers(server: ServerHandle): Promise<[ScriptedWorker, ScriptedWorker]> {
  const paused = await fetch(`${server.url}/api/admin/pause`, { method: "POST", headers: { authorization: `Bearer ${server.training!.adminToken}` } });
  expect(paused.status).toBe(200);
  const workers = await Promise.all([new ScriptedWorker(server.url).join(), new ScriptedWorker(server.url).join()]);
  sockets.push(...workers);
  await Promise.all(workers.map((w) => w.sync()));
  await until(() => workers.every((w) => server.training!.status().peers.find((p) => p.id === w.peerId)?.state === "ready"), "both trainers ready");
  return workers as [ScriptedWorker, ScriptedWorker];
}

describe("POST /api/predict round trips", () => {
  it("answers JSON rows with the serving tab's outputs (rows x classes, modelRound, servedBy, ms), and the float32 form with its headers", async () => {
    const server = await start();
    const { member: m, tab: t } = await servingTab(server, { answer: echo });
    expect(t.welcome).toEqual({ type: "serve-welcome", features: FEATURES, classes: CLASSES, round: 0, maxWaitMs: 5, maxBatch: 32 });

    const json = await predict(server, { inputs: [row(1), row(2), row(3)] });
    expect(json.status).toBe(200);
    const body = json.json as PredictResponse;
    expect(body.outputs).toEqual([expectedRow(1), expectedRow(2), expectedRow(3)]);
    expect(body.modelRound).toBe(0);
    expect(body.servedBy).toBe(m.peerId);
    expect(body.ms).toBeGreaterThanOrEqual(0);
    // The tab got exactly the request's rows, as float32.
    expect(t.requests).toHaveLength(1);
    expect(t.requests[0]?.rows).toBe(3);
    expect(Array.from(t.requests[0]!.inputs)).toEqual([...row(1), ...row(2), ...row(3)].map(Math.fround));

    const inputs = new Float32Array([...row(4), ...row(5)]);
    const binary = await fetch(`${server.url}/api/predict`, { method: "POST", headers: { "content-type": "application/octet-stream", "x-shape": "2,784" }, body: floatBody(inputs) });
    expect(binary.status).toBe(200);
    expect(binary.headers.get("content-type")).toMatch(/^application\/octet-stream/);
    expect(binary.headers.get("x-shape")).toBe(`2,${CLASSES}`);
    expect(binary.headers.get("x-model-round")).toBe("0");
    expect(binary.headers.get("x-served-by")).toBe(m.peerId);
    expect(Number(binary.headers.get("x-serve-ms"))).toBeGreaterThanOrEqual(0);
    expect(Array.from(new Float32Array(await binary.arrayBuffer()))).toEqual([...expectedRow(4), ...expectedRow(5)]);
    expect(servingStatus(server)).toMatchObject({ served: 2, errors: 0, queueDepth: 0 });
  });

  it("gives each of many concurrent requests its own rows' answer, whichever of two tabs answered and in whatever order", async () => {
    const server = await start();
    const a = await servingTab(server);
    const b = await servingTab(server);
    const tags = [11, 12, 13, 14, 15, 16, 17, 18];
    const answers = tags.map((tag) => predictLater(server, { inputs: [row(tag), row(tag + 0.5)] }));
    await until(() => a.tab.requests.length + b.tab.requests.length === tags.length, "every request held by a tab");
    expect(a.tab.requests.length).toBeGreaterThan(0);
    expect(b.tab.requests.length).toBeGreaterThan(0);
    // Answered in the reverse order of arrival: the server matches replies by id, not by order.
    for (const t of [b.tab, a.tab]) for (const request of [...t.requests].reverse()) t.reply(request.id, request.rows, outputsFor(request));
    const servedBy = new Map<number, string>();
    for (const t of [a, b]) for (const request of t.tab.requests) servedBy.set(request.inputs[0] as number, t.member.peerId);
    for (const [i, answer] of (await Promise.all(answers)).entries()) {
      const tag = tags[i] as number;
      expect(answer.status).toBe(200);
      expect((answer.json as PredictResponse).outputs).toEqual([expectedRow(tag), expectedRow(tag + 0.5)]);
      expect((answer.json as PredictResponse).servedBy).toBe(servedBy.get(tag));
    }
    expect(servingStatus(server).served).toBe(tags.length);
  });
});

describe("POST /api/predict refuses bad requests with a clear 4xx", () => {
  // One server and one serving tab for the whole table (a request that got past the checks would be
  // answered 200 by the tab, not refused); the table's requests must leave both as they were.
  let server: ServerHandle;
  let table: { member: Member; tab: ServeTab };
  beforeAll(async () => {
    server = await startServer({ port: 0, training: { job, datasetsDir: datasets, minWorkers: 1 } });
    table = await servingTab(server, { answer: echo });
    // Not the per-test cleanup's: these live until afterAll.
    sockets.splice(0);
  });
  afterAll(async () => {
    table?.member.close();
    table?.tab.close();
    await server?.close();
  });
  const json = (body: unknown) => () => predict(server, body);
  const text = (body: string) => () => predict(server, body);
  const binary = (headers: Record<string, string>, values: Float32Array) => () => predict(server, floatBody(values), { "content-type": "application/octet-stream", ...headers });
  const cases: [string, () => Promise<Answer>, number, RegExp][] = [
    ["a row of the wrong length", json({ inputs: [row(1), [1, 2, 3]] }), 400, /inputs\[1\] has 3 numbers; the model takes 784 per row/],
    ["an empty row", json({ inputs: [[]] }), 400, /inputs\[0\] has 0 numbers; the model takes 784/],
    ["NaN (not JSON)", text(`{"inputs":[[NaN${",0".repeat(FEATURES - 1)}]]}`), 400, /not JSON/],
    ["null for a number", json({ inputs: [[null, ...row(1).slice(1)]] }), 400, /Expected number but received null\n.*at inputs\.0\.0/],
    ["a string for a number", json({ inputs: [["1", ...row(1).slice(1)]] }), 400, /Expected number but received "1"/],
    ["a number too large for float64 (Infinity)", text(`{"inputs":[[1e400${",0".repeat(FEATURES - 1)}]]}`), 400, /Invalid finite: Received Infinity/],
    ["no inputs", json({ inputs: [] }), 400, /Invalid length: Expected >=1 but received 0/],
    ["inputs that are not rows", json({ inputs: [1, 2] }), 400, /Expected Array but received 1/],
    ["an unknown field", json({ inputs: [row(1)], extra: 1 }), 400, /received "extra"/],
    ["more than MAX_PREDICT_ROWS rows", json({ inputs: Array.from({ length: MAX_PREDICT_ROWS + 1 }, () => [0]) }), 400, new RegExp(`Expected <=${MAX_PREDICT_ROWS} but received ${MAX_PREDICT_ROWS + 1}`)],
    ["text/plain", () => predict(server, JSON.stringify({ inputs: [row(1)] }), { "content-type": "text/plain" }), 415, /application\/json.*application\/octet-stream.*not text\/plain/],
    ["no Content-Type", () => predict(server, new TextEncoder().encode(JSON.stringify({ inputs: [row(1)] })), {}), 415, /not a body without a Content-Type/],
    ["float32 without x-shape", binary({}, new Float32Array(FEATURES)), 400, /needs an x-shape: <rows>,784 header, got ""/],
    ["float32 with a malformed x-shape", binary({ "x-shape": "one,784" }, new Float32Array(FEATURES)), 400, /x-shape: <rows>,784 header, got "one,784"/],
    ["float32 with the wrong feature count", binary({ "x-shape": "1,783" }, new Float32Array(783)), 400, /783 numbers per row; the model takes 784/],
    ["float32 with 0 rows", binary({ "x-shape": "0,784" }, new Float32Array(0)), 400, new RegExp(`0 rows; a request carries 1 to ${MAX_PREDICT_ROWS}`)],
    ["float32 with too many rows", binary({ "x-shape": `${MAX_PREDICT_ROWS + 1},784` }, new Float32Array(FEATURES)), 400, new RegExp(`${MAX_PREDICT_ROWS + 1} rows; a request carries 1 to ${MAX_PREDICT_ROWS}`)],
    ["float32 shorter than its shape", binary({ "x-shape": "2,784" }, new Float32Array(FEATURES)), 400, /3136 bytes; 2 rows of 784 float32 need 6272/],
    // Longer than the shape: readBody's limit is the shape's byte count, so the declared length is refused as too large.
    ["float32 longer than its shape", binary({ "x-shape": "1,784" }, new Float32Array(2 * FEATURES)), 413, /6272 bytes is larger than the limit of 3136/],
    ["float32 holding NaN", binary({ "x-shape": "1,784" }, new Float32Array(FEATURES).fill(Number.NaN)), 400, /input value 0 \(row 0\) is not finite/],
    ["float32 holding Infinity in row 1", binary({ "x-shape": "2,784" }, Float32Array.from({ length: 2 * FEATURES }, (_, i) => (i === FEATURES + 3 ? Infinity : 0))), 400, /input value 787 \(row 1\) is not finite/],
  ];

  it.each(cases.map(([name, send, status, message]) => ({ name, send, status, message })))("$name: $status", async ({ send, status, message }) => {
    const answer = await send();
    expect(answer.status).toBe(status);
    expect(answer.headers.get("content-type")).toMatch(/^application\/json/);
    expect(answer.json.error).toMatch(message);
    expect(table.tab.requests).toEqual([]);
    expect(servingStatus(server)).toMatchObject({ served: 0, queueDepth: 0 });
    expect(table.tab.closed).toBeUndefined();
    expect(await health(server)).toBe(true);
  });

  it("refuses a declared body over MAX_PREDICT_BODY_BYTES with 413 before reading it, and keeps answering", async () => {
    const server = await start();
    const started = Date.now();
    const over = await declaredOnly(server, "application/json", MAX_PREDICT_BODY_BYTES + 1);
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(over.status).toBe(413);
    expect(over.headers["content-type"]).toMatch(/^application\/json/);
    expect((JSON.parse(over.body) as { error: string }).error).toMatch(new RegExp(`${MAX_PREDICT_BODY_BYTES + 1} bytes is larger than the limit of ${MAX_PREDICT_BODY_BYTES}`));
    // More large declared bodies than the large-body slots (4): each was released after its refusal.
    for (let i = 0; i < 6; i++) expect((await declaredOnly(server, "application/json", MAX_PREDICT_BODY_BYTES + 1)).status).toBe(413);
    expect((await declaredOnly(server, "application/octet-stream", 2 * FEATURES * 4 + 1, { "x-shape": "2,784" })).status).toBe(413);
    expect(await health(server)).toBe(true);
    // And a good request after all that is still answered.
    await servingTab(server, { answer: echo });
    const good = await predict(server, { inputs: [row(7)] });
    expect(good.status).toBe(200);
    expect((good.json as PredictResponse).outputs).toEqual([expectedRow(7)]);
  });
});

describe("no tab to answer", () => {
  it("answers 503 with Retry-After at once when no tab serves and there is no trainer to move", async () => {
    const server = await start();
    const started = Date.now();
    const answer = await predict(server, { inputs: [row(1)] });
    const elapsed = Date.now() - started;
    expect(answer.status).toBe(503);
    expect(answer.headers.get("retry-after")).toBe("1");
    expect(answer.json.error).toMatch(/no tab serves the model and none can be moved from training/);
    expect(elapsed).toBeLessThan(1_000);
    // The float32 form too.
    const binary = await predict(server, floatBody(new Float32Array(FEATURES)), { "content-type": "application/octet-stream", "x-shape": "1,784" });
    expect(binary.status).toBe(503);
    expect(binary.headers.get("retry-after")).toBe("1");
    expect(servingStatus(server)).toMatchObject({ served: 0, errors: 2, queueDepth: 0 });
  });

  it("answers 503 at once with maxTabs 0 although ready trainers could move, and moves none", async () => {
    const server = await start({ autoscaler: { maxTabs: 0 } });
    const trainers = await readyTrainers(server);
    const started = Date.now();
    const answer = await predict(server, { inputs: [row(1)] });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(answer.status).toBe(503);
    expect(answer.headers.get("retry-after")).toBe("1");
    // Past an autoscaler tick: still no member was asked to serve.
    await new Promise((done) => setTimeout(done, 1_200));
    for (const w of trainers) expect(w.inbox.filter((m) => m.type === "role")).toEqual([]);
    expect(servingStatus(server).poolSize).toBe(0);
  });
});

describe("a serving tab that fails", () => {
  it("a tab that closes its serve socket while holding a request: a second tab answers it, exactly once", async () => {
    const server = await start();
    const a = await servingTab(server);
    const b = await servingTab(server, { load: false, answer: echo });
    const answer = predictLater(server, { inputs: [row(3)] });
    const held = await a.tab.request(0);
    expect(b.tab.requests).toHaveLength(0);
    b.tab.loaded();
    a.tab.ws.close();
    const result = await answer;
    expect(result.status).toBe(200);
    expect(result.json).toMatchObject({ outputs: [expectedRow(3)], servedBy: b.member.peerId });
    expect(b.tab.requests.map((r) => r.id)).toEqual([held.id]);
    expect(servingStatus(server)).toMatchObject({ served: 1, errors: 0, queueDepth: 0 });
    expect(servingStatus(server).tabs.map((t) => t.id)).toEqual([b.member.peerId]);
  });

  it("a tab terminated (no close handshake) while holding requests: another tab answers them all", async () => {
    const server = await start();
    const a = await servingTab(server);
    const b = await servingTab(server, { load: false, answer: echo });
    const answers = [21, 22, 23].map((tag) => predictLater(server, { inputs: [row(tag)] }));
    await until(() => a.tab.requests.length === 3, "three requests held by a");
    b.tab.loaded();
    a.tab.ws.terminate();
    const results = await Promise.all(answers);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    expect(results.map((r) => (r.json as PredictResponse).outputs)).toEqual([[expectedRow(21)], [expectedRow(22)], [expectedRow(23)]]);
    expect(new Set(results.map((r) => r.json.servedBy))).toEqual(new Set([b.member.peerId]));
    expect(servingStatus(server).served).toBe(3);
  });

  // The dispatcher never offers a request again to a tab that failed it: when the failing tab joined
  // first it wins ties between idle tabs, so without that it would get the request back at once,
  // again and again. Both join orders must end with the healthy tab answering once.
  it.each([
    { first: "the failing tab", failingFirst: true, tag: 4 },
    { first: "the healthy tab", failingFirst: false, tag: 5 },
  ])("a tab answering with an error frame ($first joined first): the other tab answers, and the failing tab sees it once", async ({ failingFirst, tag }) => {
    const server = await start({ deadlineMs: 3_000 });
    const joined = failingFirst
      ? [await servingTab(server), await servingTab(server, { load: false, answer: echo })]
      : [await servingTab(server, { load: false, answer: echo }), await servingTab(server)].reverse();
    const [a, b] = joined as [Awaited<ReturnType<typeof servingTab>>, Awaited<ReturnType<typeof servingTab>>];
    const answer = predictLater(server, { inputs: [row(tag)] });
    const held = await a.tab.request(0);
    b.tab.loaded();
    await until(() => servingStatus(server).tabs.find((t) => t.id === b.member.peerId)?.round === 0, "b loaded");
    // a cannot predict (say its backend lost the device): every request it gets, it fails.
    a.tab.answer = (request) => ({ kind: "error", message: `cannot predict request ${request.id}` });
    a.tab.fail(held.id, "the device was lost");
    const result = await answer;
    expect(result.status).toBe(200);
    expect(result.json).toMatchObject({ outputs: [expectedRow(tag)], servedBy: b.member.peerId });
    expect(servingStatus(server).served).toBe(1);
    expect(a.tab.requests).toHaveLength(1);
    expect(a.tab.closed).toBeUndefined();
  });

  // A tab whose first request takes longer than a capacity measure (a WebGPU warm-up compiling its
  // shaders) answered nothing in that window: it must not be rated 0 requests/s and left out for
  // good (bench:serve lost every tab that way).
  it("a tab whose first answer was slow keeps getting requests", async () => {
    const server = await start({ deadlineMs: 2_500 });
    const t = await servingTab(server);
    const first = predictLater(server, { inputs: [row(1)] });
    const slow = await t.tab.request(0);
    // Held past at least one capacity measure with >= 200 ms busy and nothing answered, then
    // answered at once (a tab that answered nothing shows no capacity: the wait ends after 1.3 s).
    await until(() => servingStatus(server).tabs[0]?.capacityRps !== undefined, "a capacity measure", 1_300).catch(() => undefined);
    t.tab.reply(slow.id, slow.rows, outputsFor(slow));
    expect((await first).status).toBe(200);
    t.tab.answer = echo;
    const second = await predict(server, { inputs: [row(2)] });
    expect(second.status).toBe(200);
    expect(second.json).toMatchObject({ outputs: [expectedRow(2)], servedBy: t.member.peerId });
  });

  it("a request no tab answers gets 504 after the deadline", async () => {
    const deadlineMs = 300;
    const server = await start({ deadlineMs });
    const t = await servingTab(server);
    const started = Date.now();
    const answer = await predict(server, { inputs: [row(6)] });
    const elapsed = Date.now() - started;
    expect(answer.status).toBe(504);
    expect(answer.json.error).toMatch(/no serving tab answered within the 300 ms deadline/);
    expect(elapsed).toBeGreaterThanOrEqual(deadlineMs - 5);
    expect(elapsed).toBeLessThan(deadlineMs + 1_000);
    expect(t.tab.requests).toHaveLength(1);
    expect(servingStatus(server)).toMatchObject({ served: 0, errors: 1, queueDepth: 0 });
    expect(servingStatus(server).tabs[0]?.outstanding).toBe(0);
  });

  it("a request queued with no loaded tab gets 504 after the deadline too", async () => {
    const server = await start({ deadlineMs: 300 });
    const t = await servingTab(server, { load: false });
    const answer = await predict(server, { inputs: [row(6)] });
    expect(answer.status).toBe(504);
    expect(t.tab.requests).toHaveLength(0);
    expect(servingStatus(server).queueDepth).toBe(0);
  });

  it("a reply that comes after the deadline is dropped, and the slow tab keeps serving", async () => {
    const server = await start({ deadlineMs: 300 });
    const t = await servingTab(server);
    expect((await predict(server, { inputs: [row(6)] })).status).toBe(504);
    const late = t.tab.requests[0]!;
    t.tab.reply(late.id, late.rows, outputsFor(late));
    // A marker behind the late reply on the same socket: once the server shows it, it has read the reply.
    t.tab.loaded(1);
    await until(() => servingStatus(server).tabs[0]?.round === 1 || t.tab.closed !== undefined, "the marker read");
    t.tab.answer = echo;
    const next = await predict(server, { inputs: [row(8)] });
    expect(next.status).toBe(200);
    expect(next.json).toMatchObject({ outputs: [expectedRow(8)], servedBy: t.member.peerId });
    expect(t.tab.closed).toBeUndefined();
  });
  it("a request held past the attempt timeout is also offered to another tab; the first answer wins, the slower tab's late one is dropped", async () => {
    const server = await start();
    const slow = await servingTab(server);
    const fast = await servingTab(server, { load: false, answer: echo });
    const answer = predictLater(server, { inputs: [row(13)] });
    const held = await slow.tab.request(0);
    fast.tab.loaded();
    // The dispatcher's attempt timeout is 2 s: then the fast tab gets a copy and answers it.
    const result = await answer;
    expect(result.status).toBe(200);
    expect(result.json).toMatchObject({ outputs: [expectedRow(13)], servedBy: fast.member.peerId });
    expect(fast.tab.requests.map((r) => r.id)).toEqual([held.id]);
    // The slow tab's answer comes after all: dropped, and the slow tab is still a serving tab.
    slow.tab.reply(held.id, held.rows, outputsFor(held));
    slow.tab.loaded(1);
    await until(() => servingStatus(server).tabs.find((t) => t.id === slow.member.peerId)?.round === 1 || slow.tab.closed !== undefined, "the marker read");
    expect(slow.tab.closed).toBeUndefined();
    expect(servingStatus(server)).toMatchObject({ served: 1, errors: 0 });
    expect(servingStatus(server).tabs.map((t) => t.id).sort()).toEqual([slow.member.peerId, fast.member.peerId].sort());
  });
});

describe("serve socket hardening", () => {
  it("refuses a serve-hello with a wrong session token (1008, no requests), and takes the right one after", async () => {
    const server = await start({ deadlineMs: 300 });
    const m = await member(server, "server");
    const forged = tab(server);
    await forged.hello({ peerId: m.peerId, sessionToken: "A".repeat(43) }, { expectWelcome: false });
    const closed = await forged.closedBy();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(/unknown peer id or session token/);
    expect(forged.welcome).toBeUndefined();
    // The member serves (its role) but has no serve socket: the request waits, and times out.
    expect((await predict(server, { inputs: [row(1)] })).status).toBe(504);
    expect(forged.requests).toEqual([]);
    expect(forged.undecoded).toEqual([]);
    expect(servingStatus(server).tabs).toEqual([]);
    // The refused attempt left nothing behind: the real identity gets its serve socket.
    const real = await tab(server).hello(m.identity!);
    real.answer = echo;
    real.loaded();
    expect((await predict(server, { inputs: [row(2)] })).json).toMatchObject({ outputs: [expectedRow(2)], servedBy: m.peerId });
  });

  it("refuses a serve-hello from a member whose role is not server (1008)", async () => {
    const server = await start({ deadlineMs: 300 });
    const trainer = await member(server);
    const t = tab(server);
    await t.hello(trainer.identity!, { expectWelcome: false });
    const closed = await t.closedBy();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(/is not a serving member/);
    expect(t.welcome).toBeUndefined();
    expect(t.requests).toEqual([]);
    expect(servingStatus(server).tabs).toEqual([]);
  });

  it("refuses a serve-hello for a member that left the job (its identity is revoked)", async () => {
    const server = await start();
    const m = await member(server, "server");
    const identity = m.identity!;
    m.close();
    await until(() => !server.training!.status().peers.some((p) => p.id === identity.peerId && p.state !== "gone"), "the member gone");
    const t = tab(server);
    await t.hello(identity, { expectWelcome: false });
    expect((await t.closedBy()).code).toBe(1008);
  });

  it.each([
    ["a binary first message", (t: ServeTab) => t.ws.send(new Uint8Array(16)), /the first message must be serve-hello/],
    ["serve-loaded before serve-hello", (t: ServeTab) => t.send({ type: "serve-loaded", round: 0 }), /the first message must be serve-hello/],
    ["a first message that is not JSON", (t: ServeTab) => t.ws.send("hello?"), /not JSON/],
    ["a serve-hello of another protocol version", (t: ServeTab) => t.send({ type: "serve-hello", protocol: 999, peerId: "w-1", sessionToken: "A".repeat(43), maxBatch: 1 }), /bad serve message/],
  ])("closes a serve socket whose first message is %s (1008)", async (_name, send, reason) => {
    const server = await start();
    const t = tab(server);
    await t.opened();
    send(t);
    const closed = await t.closedBy();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(reason);
    expect(t.messages).toEqual([]);
    expect(await health(server)).toBe(true);
  });

  it("refuses a second serve socket for the same member; the first keeps serving", async () => {
    const server = await start();
    const first = await servingTab(server, { answer: echo });
    const second = tab(server);
    await second.hello(first.member.identity!, { expectWelcome: false });
    const closed = await second.closedBy();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(/already has a serve socket/);
    const answer = await predict(server, { inputs: [row(9)] });
    expect(answer.json).toMatchObject({ outputs: [expectedRow(9)], servedBy: first.member.peerId });
    expect(first.tab.closed).toBeUndefined();
  });

  it.each([
    ["a request id the tab does not hold", (t: ServeTab, held: ServeRequestFrame) => t.reply(held.id + 1_000, held.rows, outputsFor(held)), /not outstanding on this tab/],
    ["the wrong number of rows", (t: ServeTab, held: ServeRequestFrame) => t.reply(held.id, held.rows + 1, new Float32Array((held.rows + 1) * CLASSES)), /has 2 rows; the request had 1/],
    ["the wrong number of outputs per row", (t: ServeTab, held: ServeRequestFrame) => t.reply(held.id, held.rows, new Float32Array(held.rows * (CLASSES + 1))), /carries 44 bytes; its shape needs 40/],
    ["a non-finite output", (t: ServeTab, held: ServeRequestFrame) => t.reply(held.id, held.rows, new Float32Array(held.rows * CLASSES).fill(Number.NaN)), /non-finite/],
    ["a text message other than serve-loaded", (t: ServeTab) => t.send({ type: "serve-hello" }), /bad serve message/],
  ])("closes a tab that answers with %s (1008); what it held goes to another tab, answered once", async (_name, misbehave, reason) => {
    const server = await start();
    const a = await servingTab(server);
    const b = await servingTab(server, { load: false, answer: echo });
    const answer = predictLater(server, { inputs: [row(10)] });
    const held = await a.tab.request(0);
    b.tab.loaded();
    misbehave(a.tab, held);
    const closed = await a.tab.closedBy();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toMatch(reason);
    const result = await answer;
    expect(result.status).toBe(200);
    expect(result.json).toMatchObject({ outputs: [expectedRow(10)], servedBy: b.member.peerId });
    expect(servingStatus(server)).toMatchObject({ served: 1, errors: 0 });
  });
});

describe("the queue bound", () => {
  it("refuses requests beyond maxPendingRows with 503 and Retry-After, and takes them again once answered", async () => {
    const server = await start({ maxPendingRows: 4 });
    const t = await servingTab(server);
    const first = predictLater(server, { inputs: [row(1), row(2)] });
    const second = predictLater(server, { inputs: [row(3), row(4)] });
    await until(() => t.tab.requests.length === 2, "both requests held");
    const started = Date.now();
    const refused = await predict(server, { inputs: [row(5)] });
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(refused.json.error).toMatch(/the serving queue is full/);
    // The float32 form is bounded the same way.
    const refusedBinary = await predict(server, floatBody(new Float32Array(FEATURES)), { "content-type": "application/octet-stream", "x-shape": "1,784" });
    expect(refusedBinary.status).toBe(503);
    expect(refusedBinary.headers.get("retry-after")).toBe("1");
    expect(t.tab.requests).toHaveLength(2);
    for (const request of t.tab.requests) t.tab.reply(request.id, request.rows, outputsFor(request));
    expect((await first).json).toMatchObject({ outputs: [expectedRow(1), expectedRow(2)] });
    expect((await second).json).toMatchObject({ outputs: [expectedRow(3), expectedRow(4)] });
    t.tab.answer = echo;
    // Room again: the bound counts unanswered rows, not requests ever made.
    const again = await predict(server, { inputs: [row(6), row(7), row(8), row(9)] });
    expect(again.status).toBe(200);
    expect(servingStatus(server)).toMatchObject({ served: 3, errors: 2 });
  });

  it("a single request larger than maxPendingRows is refused 503 even with an idle tab", async () => {
    const server = await start({ maxPendingRows: 2 });
    await servingTab(server, { answer: echo });
    const refused = await predict(server, { inputs: [row(1), row(2), row(3)] });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect((await predict(server, { inputs: [row(1), row(2)] })).status).toBe(200);
  });
});

describe("the autoscaler", () => {
  it("moves a ready trainer to serving when a request finds no serving tab (cold start), and the moved tab answers it", async () => {
    const server = await start();
    const trainers = await readyTrainers(server);
    const started = Date.now();
    const answer = predictLater(server, { inputs: [row(12)] });
    await until(() => trainers.some((w) => w.inbox.some((m) => m.type === "role")), "a role message", 2_000);
    expect(Date.now() - started).toBeLessThan(2_000);
    const moved = trainers.find((w) => w.inbox.some((m) => m.type === "role"))!;
    const stayed = trainers.find((w) => w !== moved)!;
    expect(moved.inbox.filter((m) => m.type === "role")).toEqual([{ type: "role", role: "server" }]);
    expect(stayed.inbox.filter((m) => m.type === "role")).toEqual([]);
    expect(servingStatus(server)).toMatchObject({ poolSize: 1, target: 1 });
    expect(servingStatus(server).decisions.at(-1)?.reason).toMatch(/cold start/);
    // The moved member is now a server: its serve socket is welcomed, and it answers the waiting request.
    const t = tab(server);
    t.answer = echo;
    await t.hello(moved.identity!);
    expect(servingStatus(server).tabs).toEqual([{ id: moved.peerId, outstanding: 0, dedicated: false }]);
    t.loaded();
    const result = await answer;
    expect(result.status).toBe(200);
    expect(result.json).toMatchObject({ outputs: [expectedRow(12)], servedBy: moved.peerId });
    // The trainer left training can still not open a serve socket.
    const refused = tab(server);
    await refused.hello(stayed.identity!, { expectWelcome: false });
    expect((await refused.closedBy()).code).toBe(1008);
  });

  it("never moves the last trainer the job needs (minWorkers): 503 at once instead", async () => {
    const server = await start({}, { minWorkers: 2 });
    const trainers = await readyTrainers(server);
    const answer = await predict(server, { inputs: [row(1)] });
    expect(answer.status).toBe(503);
    expect(answer.headers.get("retry-after")).toBe("1");
    for (const w of trainers) expect(w.inbox.filter((m) => m.type === "role")).toEqual([]);
  });
});

describe("the typed client (packages/serving PredictClient)", () => {
  it("predicts in JSON and in float32, and turns refusals into PredictError with the status and Retry-After", async () => {
    const server = await start({ maxPendingRows: 8 });
    const { member: m } = await servingTab(server, { answer: echo });
    const client = new PredictClient(server.url);
    const json = await client.predict([row(2), row(3)]);
    expect(json).toMatchObject({ outputs: [expectedRow(2), expectedRow(3)], servedBy: m.peerId, modelRound: 0 });
    const binary = await client.predictBinary(Float32Array.from([...row(4), ...row(5)]), 2);
    expect(binary.classes).toBe(CLASSES);
    expect(binary.servedBy).toBe(m.peerId);
    expect([...binary.outputs]).toEqual([...expectedRow(4), ...expectedRow(5)]);
    const shape = await client.predict([[1, 2, 3]]).catch((error: unknown) => error);
    expect(shape).toBeInstanceOf(PredictError);
    expect(shape).toMatchObject({ status: 400, retryAfterS: undefined });
    expect((shape as PredictError).message).toMatch(/inputs\[0\] has 3 numbers; the model takes 784/);
    const full = await client.predict(Array.from({ length: 9 }, (_, k) => row(k))).catch((error: unknown) => error);
    expect(full).toMatchObject({ status: 503, retryAfterS: 1 });
    await expect(client.predictBinary(new Float32Array(5), 2)).rejects.toThrow(RangeError);
  });
});

describe("a saturated pool", () => {
  it("refuses at once, with 503 and Retry-After, the requests its tabs could not answer before the deadline", async () => {
    const server = await start({ deadlineMs: 1_500 });
    // Batches of 2: it holds 4 rows at most, the rest queue behind it.
    const m = await member(server, "server");
    const t = (await tab(server).hello(m.identity!, { maxBatch: 2 })).loaded();
    await until(() => servingStatus(server).tabs.some((v) => v.round !== undefined), "the tab loaded at the server");
    // A slow tab: each request answered 100 ms after it arrived, one at a time (10 requests/s).
    let busyUntil = 0;
    t.answer = (request) => {
      busyUntil = Math.max(busyUntil, Date.now()) + 100;
      setTimeout(() => t.reply(request.id, request.rows, outputsFor(request)), busyUntil - Date.now());
      return { kind: "hold" };
    };
    // Long enough for capacity measures (every second) to see it.
    for (let k = 0; k < 12; k++) expect((await predict(server, { inputs: [row(k)] })).status).toBe(200);
    await until(() => (servingStatus(server).tabs[0]?.capacityRps ?? 0) > 0, "a capacity measure", 3_000);
    // 60 rows at once: about 6 s of work for a 1.5 s deadline.
    const answers = await Promise.all(Array.from({ length: 60 }, (_, k) => predict(server, { inputs: [row(k)] })));
    const refused = answers.filter((a) => a.status === 503);
    expect(refused.length).toBeGreaterThan(20);
    expect(refused.every((a) => a.headers.get("retry-after") === "1")).toBe(true);
    expect((refused[0]?.json as { error: string }).error).toMatch(/saturated: the \d+ rows waiting take its tabs about [\d.]+ s, more than 750 ms of the 1500 ms deadline/);
    // What it took, it answered: nothing ran into the deadline.
    expect(answers.filter((a) => a.status === 504)).toEqual([]);
    expect(answers.filter((a) => a.status === 200).length).toBe(60 - refused.length);
  });
});

describe("--serve-max-batch", () => {
  it("bounds a tab's batch below its own offer: the welcome says so, and the tab holds at most two such batches", async () => {
    const server = await start({ maxBatch: 2 });
    const m = await member(server, "server");
    const t = (await tab(server).hello(m.identity!, { maxBatch: 32 })).loaded();
    expect(t.welcome?.maxBatch).toBe(2);
    await until(() => servingStatus(server).tabs.some((v) => v.round !== undefined), "the tab loaded at the server");
    const answers = Array.from({ length: 6 }, (_, k) => predictLater(server, { inputs: [row(k)] }));
    await t.request(3);
    // Held and not answered: 2 batches of 2 rows; the rest wait in the queue (the last of the six
    // HTTP requests may still be on its way in: wait for it, then check the tab was given no more).
    await until(() => servingStatus(server).queueDepth === 2, "the two rows beyond the tab's two batches queued");
    expect(t.requests).toHaveLength(4);
    t.answer = echo;
    for (const request of t.requests.splice(0)) t.reply(request.id, request.rows, outputsFor(request));
    expect((await Promise.all(answers)).map((a) => a.status)).toEqual([200, 200, 200, 200, 200, 200]);
  });
});
