import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import express from "express";
import { parseJob, parseStatus, peerTotals, PROTOCOL_VERSION, type PeerStatus, type Status } from "@crowdtrain/protocol";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { StatusStream } from "../src/dashboard/events.ts";
import { ringLinks } from "../src/dashboard/links.ts";
import { GONE_KEEP_MAX, GONE_KEEP_MS, PeerRoster } from "../src/dashboard/roster.ts";
import { startServer, type ServerHandle } from "../src/server.ts";
import { peerRowsShown, STATUS_PEER_ROWS } from "../src/training/status.ts";
import { runFixture } from "./fixtures/run-fixture.ts";

/** Every wait on a server in this file. */
const WAIT_MS = 10_000;

const row = (id: string, extra: Partial<PeerStatus> = {}): PeerStatus => ({
  id,
  name: undefined,
  backend: "cpu",
  adapter: undefined,
  state: "training",
  samplesPerSecond: 100,
  share: 0.5,
  lastRoundMs: 20,
  lastHash: undefined,
  bytesSent: 10,
  bytesReceived: 10,
  ...extra,
});

describe("ringLinks", () => {
  const report = (bytesSent: number, allReduceMs: number) => ({ bytesSent, timings: { allReduceMs } });
  const byPeer = (reports: Record<string, ReturnType<typeof report>>) => new Map(Object.entries(reports));

  it("gives each peer's outgoing link to its right neighbour, the last one closing the ring", () => {
    expect(ringLinks(["a", "b", "c"], byPeer({ a: report(1000, 500), b: report(3000, 1000), c: report(0, 0) }))).toEqual([
      { from: "a", to: "b", bytes: 1000, ms: 500, bytesPerSecond: 2000 },
      { from: "b", to: "c", bytes: 3000, ms: 1000, bytesPerSecond: 3000 },
      { from: "c", to: "a", bytes: 0, ms: 0 },
    ]);
  });

  it("has no links for a ring of one or none, and skips a peer without a report", () => {
    expect(ringLinks([], byPeer({}))).toEqual([]);
    expect(ringLinks(["a"], byPeer({ a: report(10, 10) }))).toEqual([]);
    expect(ringLinks(["a", "b"], byPeer({ b: report(10, 10) }))).toEqual([{ from: "b", to: "a", bytes: 10, ms: 10, bytesPerSecond: 1000 }]);
  });
});

describe("PeerRoster", () => {
  it("keeps a departed peer as gone, with its last numbers, newest departure first, for GONE_KEEP_MS", () => {
    const roster = new PeerRoster();
    roster.depart(row("b", { bytesSent: 99 }), 1_000);
    expect(roster.rows([row("a"), row("c")], 1_000).map((p) => [p.id, p.state])).toEqual([
      ["a", "training"],
      ["c", "training"],
      ["b", "gone"],
    ]);
    roster.depart(row("c"), 2_000);
    const rows = roster.rows([row("a")], 2_000);
    expect(rows.map((p) => p.id)).toEqual(["a", "c", "b"]);
    expect(rows[2]).toMatchObject({ bytesSent: 99, leftAt: 1_000 });
    expect(roster.rows([row("a")], 2_000 + GONE_KEEP_MS + 1).map((p) => p.id)).toEqual(["a"]);
  });

  it(`keeps at most ${GONE_KEEP_MAX} departed peers`, () => {
    const roster = new PeerRoster();
    for (let i = 0; i < GONE_KEEP_MAX + 10; i++) roster.depart(row(`p${i}`), 0);
    const rows = roster.rows([], 1);
    expect(rows).toHaveLength(GONE_KEEP_MAX);
    expect(rows.every((p) => p.state === "gone")).toBe(true);
  });
});

/** Reads server-sent events from `url` until `count` data lines arrived; returns them and the response. */
async function readEvents(url: string, count: number, signal: AbortSignal): Promise<{ data: string[]; response: Response }> {
  const response = await fetch(url, { signal });
  if (response.body === null) throw new Error("no body");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const data: string[] = [];
  let buffer = "";
  while (data.length < count) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) if (line.startsWith("data: ")) data.push(line.slice(6));
    }
  }
  return { data, response };
}

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not within ${WAIT_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

describe("peer rows of a large swarm", () => {
  const row = (k: number, patch: Partial<PeerStatus> = {}): PeerStatus => ({ id: `w-${k.toString(16).padStart(4, "0")}`, backend: "cpu", state: "ready", share: 0, bytesSent: 0, bytesReceived: 0, samplesPerSecond: 1000 + k, ...patch });

  it(`shows every row of a swarm up to ${STATUS_PEER_ROWS}, in the roster's order`, () => {
    const rows = [...Array.from({ length: STATUS_PEER_ROWS - 1 }, (_, k) => row(k)), row(9999, { state: "gone" })];
    expect(peerRowsShown(rows)).toEqual(rows);
    expect(peerTotals(rows)).toEqual({ live: STATUS_PEER_ROWS - 1, training: 0, gone: 1 });
  });

  it(`of a larger one, ${STATUS_PEER_ROWS} rows: struck and failed-audit peers, then the slowest, in join order, then the newest departures`, () => {
    const live = Array.from({ length: 1000 }, (_, k) => row(k, { state: k % 2 === 0 ? "training" : "ready" }));
    live[700] = row(700, { strikes: 2 });
    live[900] = row(900, { audits: { passed: 3, failed: 1 } });
    live[999] = row(999, { samplesPerSecond: 1 }); // the slowest measured
    live[998] = row(998, { samplesPerSecond: undefined }); // new: unmeasured, last
    const gone = Array.from({ length: 50 }, (_, k) => row(5000 + k, { state: "gone" }));
    const shown = peerRowsShown([...live, ...gone]);
    expect(shown).toHaveLength(STATUS_PEER_ROWS);
    const ids = shown.map((r) => r.id);
    for (const k of [700, 900, 999]) expect(ids).toContain(row(k).id);
    expect(ids).not.toContain(row(998).id);
    // The slowest of the rest: the lowest k (samplesPerSecond 1000 + k).
    expect(ids).toContain(row(0).id);
    expect(ids).not.toContain(row(990).id);
    // Live rows in join order, then departures in the roster's order, the newest first.
    const liveShown = shown.filter((r) => r.state !== "gone");
    expect(liveShown.map((r) => r.id)).toEqual([...liveShown.map((r) => r.id)].sort());
    expect(shown.slice(liveShown.length).map((r) => r.id)).toEqual(gone.slice(0, shown.length - liveShown.length).map((r) => r.id));
    expect(shown.length - liveShown.length).toBeGreaterThan(0);
    expect(peerTotals([...live, ...gone])).toEqual({ live: 1000, training: 497, gone: 50 }); // 700, 900 and 998 were made "ready"
  });
});

describe("StatusStream", () => {
  let server: http.Server;
  let base: string;
  let version = 0;
  const stream = new StatusStream(() => ({ version }));

  beforeAll(async () => {
    const app = express();
    app.get("/events", stream.handle);
    server = http.createServer(app);
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    stream.close();
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
  });

  it("sends a snapshot at once, then on a change, and frees the connection's timer when it closes", async () => {
    const abort = new AbortController();
    const first = readEvents(`${base}/events`, 1, abort.signal);
    const { data, response } = await first;
    expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/);
    expect(response.headers.get("cache-control")).toMatch(/no-cache/);
    expect(JSON.parse(data[0] as string)).toEqual({ version: 0 });
    expect(stream.size).toBe(1);
    abort.abort();
    await until(() => stream.size === 0, "the stream forgets a closed connection");
  });

  it("pushes a change soon, well before the next periodic snapshot", async () => {
    const abort = new AbortController();
    const started = Date.now();
    const reading = readEvents(`${base}/events`, 2, abort.signal);
    await until(() => stream.size === 1, "connected");
    version = 1;
    stream.notify();
    const { data } = await reading;
    expect(data.map((d) => JSON.parse(d) as unknown)).toEqual([{ version: 0 }, { version: 1 }]);
    expect(Date.now() - started).toBeLessThan(900);
    abort.abort();
    await until(() => stream.size === 0, "closed");
  });
});

describe("the training server's dashboard side", () => {
  let datasets: string;
  let webDir: string;
  let server: ServerHandle;
  const ADMIN = "dashboard-test-token";
  const job = parseJob({
    name: "dashboard-test",
    dataset: "mnist",
    model: { kind: "mlp", hidden: [8] },
    optimizer: { kind: "sgd", learningRate: 0.1 },
    batchSize: 20,
    rounds: 5,
    epochs: 2,
    spotCheck: 0,
  });
  const status = async (): Promise<Status> => parseStatus(await (await fetch(`${server.url}/api/status`)).json());
  const admin = (action: string, token: string | undefined, body?: unknown) =>
    fetch(`${server.url}/api/admin/${action}`, {
      method: "POST",
      headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  beforeAll(async () => {
    datasets = mkdtempSync(join(tmpdir(), "crowdtrain-datasets-"));
    await buildMnistDataset(join(datasets, "mnist"));
    webDir = mkdtempSync(join(tmpdir(), "crowdtrain-web-"));
    const files: [string, string][] = [
      ["worker/index.html", "worker page"],
      ["worker/lab.html", "lab page"],
      ["dashboard/index.html", "dashboard page"],
      ["assets/app-1234.js", "console.log(1)"],
    ];
    for (const [file, text] of files) {
      mkdirSync(join(webDir, file, ".."), { recursive: true });
      writeFileSync(join(webDir, file), text);
    }
    server = await startServer({ port: 0, webDir, training: { job, datasetsDir: datasets, minWorkers: 2, adminToken: ADMIN } });
  }, 60_000);

  afterAll(async () => {
    await server?.close();
    rmSync(datasets, { recursive: true, force: true });
    rmSync(webDir, { recursive: true, force: true });
  });

  it("serves the worker page at /, the dashboard at /dashboard, cacheable assets, and no lab", async () => {
    expect((await fetch(`${server.url}/lab.html`)).status).toBe(404);
    for (const [path, text] of [
      ["/", "worker page"],
      ["/index.html", "worker page"],
      ["/?backends=webgpu", "worker page"],
      ["/dashboard", "dashboard page"],
      ["/dashboard/", "dashboard page"],
    ]) {
      const response = await fetch(`${server.url}${path}`);
      expect(await response.text(), path).toBe(text);
      expect(response.headers.get("cache-control"), path).toBe("no-cache");
    }
    const asset = await fetch(`${server.url}/assets/app-1234.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get("cache-control")).toMatch(/immutable/);
    expect((await fetch(`${server.url}/assets/missing.js`)).status).toBe(404);
  });

  it("answers /api/status in the protocol's StatusSchema, with the round target and no ring yet", async () => {
    const s = await status();
    expect(s).toMatchObject({ status: "waiting", round: 0, targetRounds: 5, minWorkers: 2, ring: [], peers: [] });
    expect(s.lastRing).toBeUndefined();
    expect(server.training?.adminToken).toBe(ADMIN);
  });

  it("streams parseable statuses at /api/events, and shows a peer that left as gone", async () => {
    const abort = new AbortController();
    const reading = readEvents(`${server.url}/api/events`, 3, abort.signal);
    const ws = new WebSocket(`${server.url.replace("http", "ws")}/ws`);
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    const name = "<b>bold</b><img src=x onerror=alert(1)>";
    ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, name, backend: "webgpu", adapter: "SwiftShader" }));
    const { data } = await reading;
    const statuses = data.map((d) => parseStatus(JSON.parse(d)));
    expect(statuses.at(-1)?.peers).toEqual([expect.objectContaining({ name, backend: "webgpu", adapter: "SwiftShader", state: "joining" })]);
    const id = statuses.at(-1)?.peers[0]?.id;
    abort.abort();
    ws.close();
    await until(async () => (await status()).peers[0]?.state === "gone", "the peer is shown as gone");
    const gone = (await status()).peers[0];
    expect(gone).toMatchObject({ id, name, state: "gone" });
    expect(gone?.leftAt).toBeGreaterThan(0);
    expect((await status()).events.map((e) => e.kind)).toEqual(expect.arrayContaining(["joined", "left"]));
    await until(() => server.training?.stream.size === 0, "the dashboard connection is freed");
  });

  it("pages every peer row at /api/peers, and answers a bad offset or limit with a 400 that names it", async () => {
    const sockets = await Promise.all(
      [0, 1, 2].map(
        (k) =>
          new Promise<WebSocket>((resolve, reject) => {
            const ws = new WebSocket(`${server.url.replace("http", "ws")}/ws`);
            ws.once("open", () => {
              ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, name: `p${k}`, backend: "cpu" }));
              resolve(ws);
            });
            ws.once("error", reject);
          }),
      ),
    );
    try {
      await until(async () => (await status()).peerTotals?.live === 3, "three live peers");
      const page = async (query: string) => (await fetch(`${server.url}/api/peers${query}`)).json() as Promise<{ total: number; offset: number; peers: PeerStatus[] }>;
      const all = await page("");
      expect(all.total).toBeGreaterThanOrEqual(3);
      expect(all.peers.filter((p) => p.state !== "gone").map((p) => p.name)).toEqual(["p0", "p1", "p2"]);
      const second = await page("?offset=1&limit=1");
      expect(second).toMatchObject({ total: all.total, offset: 1 });
      expect(second.peers).toEqual([all.peers[1]]);
      expect((await page(`?offset=${all.total}`)).peers).toEqual([]);
      for (const [query, named] of [["?limit=501", "limit"], ["?offset=-1", "offset"], ["?limit=1e3", "limit"], ["?offset=1&offset=2", "offset"]] as const) {
        const answer = await fetch(`${server.url}/api/peers${query}`);
        expect(answer.status, query).toBe(400);
        expect(((await answer.json()) as { error: string }).error, query).toMatch(new RegExp(`^${named} must be decimal digits`));
      }
    } finally {
      for (const ws of sockets) ws.close();
    }
  });

  it("refuses operator actions without the right token and carries them out with it", async () => {
    const without = await admin("pause", undefined);
    expect(without.status).toBe(401);
    expect(((await without.json()) as { error: string }).error).toMatch(/admin token required/);
    expect((await admin("pause", "not-the-token")).status).toBe(401);
    expect((await status()).status).toBe("waiting");

    expect((await admin("pause", ADMIN)).status).toBe(200);
    expect((await status()).status).toBe("paused");
    expect((await admin("resume", ADMIN)).status).toBe(200);
    expect((await status()).status).toBe("waiting");
    expect((await admin("target", ADMIN, { rounds: 3 })).status).toBe(200);
    expect((await status()).targetRounds).toBe(3);
    const kinds = (await status()).events.map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(["paused", "resumed", "target"]));
  });

  it("closes with a dashboard still connected, ending its stream", async () => {
    const own = await startServer({ port: 0, webDir, training: { job, datasetsDir: datasets, adminToken: ADMIN } });
    const abort = new AbortController();
    await readEvents(`${own.url}/api/events`, 1, abort.signal);
    expect(own.training?.stream.size).toBe(1);
    await own.close();
    expect(own.training?.stream.size).toBe(0);
    abort.abort();
  });
});

it("leaves nothing running after close() with a dashboard connected: the process exits by itself", async () => {
  const { code, output } = await runFixture("apps/server/test/fixtures/dashboard-start-stop.ts", 30_000);
  expect({ code, closed: output.includes("closed\n") }, output).toEqual({ code: 0, closed: true });
}, 40_000);
