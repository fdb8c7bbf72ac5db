import http from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import express from "express";
import { afterEach, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import type { Identity } from "@crowdtrain/protocol";
import { IdentityRegistry } from "../src/identity/registry.ts";
import { closeReason, MAX_CLOSE_REASON_BYTES } from "../src/close-reason.ts";
import { DEFAULT_SIGNALLING_LIMITS, type SignallingLimits } from "../src/signalling/filtered-socket.ts";
import { inspectPeerMessage } from "../src/signalling/peer-messages.ts";
import { mountPeerServer, PEER_PATH, readHandshake } from "../src/signalling/peer-server.ts";
import { createTokenBucket } from "../src/signalling/token-bucket.ts";
import { createTimerScope } from "../src/timer-scope.ts";
import { routeUpgrade, type UpgradeRoutes } from "../src/upgrade.ts";

/** How long a WebSocket may take to open, answer or close on loopback. */
const WS_TIMEOUT_MS = 5_000;
/** How long a test waits to be sure a message did not arrive (loopback delivers in well under 1 ms). */
const SILENCE_MS = 200;

type Signalling = {
  wsUrl: string;
  httpUrl: string;
  identities: IdentityRegistry;
  logs: string[];
  close(): Promise<void>;
};

const running: Signalling[] = [];
const clients: WebSocket[] = [];

afterEach(async () => {
  for (const ws of clients.splice(0)) ws.terminate();
  await Promise.all(running.splice(0).map((signalling) => signalling.close()));
});

/** An http server with only the signalling route, as server.ts wires it, on a random loopback port. */
async function startSignalling(options: { limits?: Partial<SignallingLimits>; identities?: IdentityRegistry } = {}): Promise<Signalling> {
  const app = express();
  const server = http.createServer(app);
  const timers = createTimerScope();
  const identities = options.identities ?? new IdentityRegistry();
  const logs: string[] = [];
  const { path, route } = mountPeerServer({
    app,
    server,
    timers,
    identities,
    origins: { allowed: [] },
    onLog: (text) => logs.push(text),
    ...(options.limits === undefined ? {} : { limits: options.limits }),
  });
  const routes: UpgradeRoutes = new Map([[path, route]]);
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => routeUpgrade(routes, req, socket, head));
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  const signalling: Signalling = {
    wsUrl: `ws://127.0.0.1:${port}${path}`,
    httpUrl: `http://127.0.0.1:${port}`,
    identities,
    logs,
    async close() {
      await route.close();
      server.closeAllConnections();
      await new Promise<void>((done, fail) => server.close((error) => (error ? fail(error) : done())));
      timers.clearAll();
    },
  };
  running.push(signalling);
  return signalling;
}

type Query = { key: string; id: string; token: string };
const queryOf = (identity: Identity): Query => ({ key: identity.peerKey, id: identity.peerId, token: identity.peerToken });
const urlFor = (s: Signalling, query: Query | string): string =>
  `${s.wsUrl}?${typeof query === "string" ? query : new URLSearchParams(query).toString()}`;

type Opened = { ok: true; ws: WebSocket; messages: Record<string, unknown>[] } | { ok: false; status: number };

/**
 * Opens a signalling socket: either it opens (every message it receives is collected, parsed) or
 * the handshake is answered with an HTTP status.
 */
function connect(url: string, headers: Record<string, string> = {}): Promise<Opened> {
  return new Promise((done, fail) => {
    const ws = new WebSocket(url, { headers });
    clients.push(ws);
    const messages: Record<string, unknown>[] = [];
    ws.on("message", (data: Buffer) => messages.push(JSON.parse(data.toString()) as Record<string, unknown>));
    const timer = setTimeout(() => fail(new Error(`no handshake answer within ${WS_TIMEOUT_MS} ms`)), WS_TIMEOUT_MS);
    ws.once("open", () => {
      clearTimeout(timer);
      done({ ok: true, ws, messages });
    });
    ws.once("unexpected-response", (req, res) => {
      clearTimeout(timer);
      res.resume();
      req.destroy();
      done({ ok: false, status: res.statusCode ?? 0 });
    });
    ws.on("error", (error) => {
      // After 'unexpected-response' the aborted request reports an error too; the status was the answer.
      clearTimeout(timer);
      fail(error);
    });
  });
}

async function register(s: Signalling, identity: Identity): Promise<{ ws: WebSocket; messages: Record<string, unknown>[] }> {
  const opened = await connect(urlFor(s, queryOf(identity)));
  if (!opened.ok) throw new Error(`registration refused with HTTP ${opened.status}`);
  await until(() => opened.messages.length > 0, "peer's OPEN");
  return opened;
}

/** Polls `check` until it holds, or fails after WS_TIMEOUT_MS naming `what`. */
async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WS_TIMEOUT_MS;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${WS_TIMEOUT_MS} ms`);
    await new Promise((done) => setTimeout(done, 5));
  }
}

function closedWith(ws: WebSocket): Promise<{ code: number; reason: Buffer }> {
  return new Promise((done, fail) => {
    if (ws.readyState === WebSocket.CLOSED) return fail(new Error("socket already closed before the test listened"));
    const timer = setTimeout(() => fail(new Error(`WebSocket not closed within ${WS_TIMEOUT_MS} ms`)), WS_TIMEOUT_MS);
    ws.once("close", (code: number, reason: Buffer) => {
      clearTimeout(timer);
      done({ code, reason });
    });
  });
}

const offer = (dst: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ type: "OFFER", dst, payload: { sdp: { type: "offer", sdp: "v=0" }, type: "data", connectionId: "dc_test" }, ...extra });

/** A forced full GC, for the memory check (vitest starts Node without --expose-gc). */
function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

describe("closeReason", () => {
  it("keeps short reasons and cuts long ones by UTF-8 bytes without splitting a character", () => {
    expect(closeReason("bye")).toBe("bye");
    expect(closeReason("a\r\nb")).toBe("a b");
    const ascii = closeReason("x".repeat(500));
    expect(ascii).toBe("x".repeat(MAX_CLOSE_REASON_BYTES));
    for (const unit of ["é", "€", "😀"]) {
      for (let prefix = 0; prefix < 4; prefix++) {
        const cut = closeReason("a".repeat(prefix) + unit.repeat(100));
        const bytes = Buffer.byteLength(cut);
        expect(bytes).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES);
        expect(bytes).toBeGreaterThan(MAX_CLOSE_REASON_BYTES - Buffer.byteLength(unit));
        expect(cut).not.toContain("\uFFFD");
        expect(cut.startsWith("a".repeat(prefix))).toBe(true);
      }
    }
  });
});

describe("token bucket and message inspection", () => {
  it("refuses beyond the burst and refills at the rate", () => {
    const bucket = createTokenBucket(10, 20, 0);
    for (let i = 0; i < 20; i++) expect(bucket.take(1, 0)).toBe(true);
    expect(bucket.take(1, 0)).toBe(false);
    expect(bucket.take(1, 100)).toBe(true);
    expect(bucket.take(1, 100)).toBe(false);
    expect(bucket.take(20, 10_000)).toBe(true);
  });

  it("delivers client messages to issued ids, drops others, refuses the rest", () => {
    const issued = (id: string) => id === "w-1";
    expect(inspectPeerMessage('{"type":"HEARTBEAT"}', issued).kind).toBe("deliver");
    expect(inspectPeerMessage(offer("w-1"), issued).kind).toBe("deliver");
    expect(inspectPeerMessage(offer("w-2"), issued).kind).toBe("drop");
    expect(inspectPeerMessage('{"type":"LEAVE","dst":"w-1"}', issued).kind).toBe("deliver");
    for (const bad of ["hello", "[]", "null", '{"type":"EXPIRE","dst":"w-1"}', '{"type":"OPEN"}', '{"type":"LEAVE"}', '{"type":"OFFER","dst":"w-1"}', offer("x".repeat(200))]) {
      expect(inspectPeerMessage(bad, issued).kind, bad).toBe("refuse");
    }
  });

  it("reads id, key and token exactly once from the handshake", () => {
    expect(readHandshake("/peerjs/peerjs?key=k&id=i&token=t")).toEqual({ ok: true, id: "i", key: "k", token: "t" });
    expect(readHandshake("/peerjs/peerjs?key=k&id=i&token=t&id=j").ok).toBe(false);
    expect(readHandshake("/peerjs/peerjs?key=k&id=i").ok).toBe(false);
  });
});

/** The token with its last character changed (never to itself: a fixed "A" left 1 in 64 tokens unchanged). */
const otherLastCharacter = (token: string): string => `${token.slice(0, -1)}${token.endsWith("A") ? "B" : "A"}`;

describe("PeerJS signalling", () => {
  it("refuses ids it did not issue, wrong keys and tokens, odd ids and repeated parameters", async () => {
    const s = await startSignalling();
    const issued = s.identities.issue("127.0.0.1");
    const good = queryOf(issued);
    const cases: [string, Query | string, number][] = [
      ["unissued id", { ...good, id: "w-000000000000000000000000" }, 403],
      ["wrong key", { ...good, key: "peerjs" }, 403],
      ["wrong token", { ...good, token: otherLastCharacter(good.token) }, 403],
      ["path-like id", { ...good, id: "../../etc/passwd" }, 403],
      ["5,000-char id", { ...good, id: "w".repeat(5_000) }, 403],
      ["no token", `key=${good.key}&id=${good.id}`, 400],
      ["a second id and token", `${new URLSearchParams(good).toString()}&id=anyone&token=x`, 400],
    ];
    for (const [what, query, status] of cases) {
      const opened = await connect(urlFor(s, query));
      expect(opened.ok ? "opened" : opened.status, what).toBe(status);
    }
    // The same identity, correctly presented, is accepted: the refusals were for the differences.
    await register(s, issued);
  });

  it("refuses a foreign Origin and accepts its own", async () => {
    const s = await startSignalling();
    const identity = s.identities.issue("127.0.0.1");
    const foreign = await connect(urlFor(s, queryOf(identity)), { origin: "https://evil.example" });
    expect(foreign.ok ? "opened" : foreign.status).toBe(403);
    const own = await connect(urlFor(s, queryOf(identity)), { origin: s.httpUrl });
    expect(own.ok).toBe(true);
  });

  it("answers 404 to peer's id service and peer list; a random id cannot register", async () => {
    const s = await startSignalling();
    const identity = s.identities.issue("127.0.0.1");
    for (const what of ["id", "peers"]) {
      const response = await fetch(`${s.httpUrl}${PEER_PATH}/${identity.peerKey}/${what}`);
      expect(response.status, what).toBe(404);
    }
    const randomId = await connect(urlFor(s, { ...queryOf(identity), id: crypto.randomUUID() }));
    expect(randomId.ok ? "opened" : randomId.status).toBe(403);
  });

  it("registers an issued id, which receives OPEN", async () => {
    const s = await startSignalling();
    const { messages } = await register(s, s.identities.issue("127.0.0.1"));
    expect(messages[0]).toEqual({ type: "OPEN" });
  });

  it("relays an OFFER between issued peers, with src set by the server", async () => {
    const s = await startSignalling();
    const alice = s.identities.issue("127.0.0.1");
    const bob = s.identities.issue("127.0.0.1");
    const a = await register(s, alice);
    const b = await register(s, bob);
    a.ws.send(offer(bob.peerId, { src: "someone-else" }));
    await until(() => b.messages.length === 2, "the relayed OFFER");
    expect(b.messages[1]).toMatchObject({ type: "OFFER", src: alice.peerId, dst: bob.peerId, payload: { connectionId: "dc_test" } });
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("keeps an OFFER for an issued id until it connects", async () => {
    const s = await startSignalling();
    const alice = s.identities.issue("127.0.0.1");
    const bob = s.identities.issue("127.0.0.1");
    const a = await register(s, alice);
    a.ws.send(offer(bob.peerId));
    // A HEARTBEAT round trip is not answered, so wait for the server to have read the offer.
    await new Promise((done) => setTimeout(done, SILENCE_MS));
    const b = await register(s, bob);
    await until(() => b.messages.length === 2, "the queued OFFER");
    expect(b.messages[1]).toMatchObject({ type: "OFFER", src: alice.peerId });
  });

  it("drops OFFERs to unknown ids without queueing them (1,500 x 60 KiB)", async () => {
    const count = 1_500;
    const padBytes = 60 * 1024;
    // Limits raised so the flood is not refused for its rate: this test is about what peer keeps.
    const s = await startSignalling({ limits: { messageBurst: 10 * count, byteBurst: 1024 ** 3 } });
    const alice = s.identities.issue("127.0.0.1");
    const bob = s.identities.issue("127.0.0.1");
    const a = await register(s, alice);
    const b = await register(s, bob);
    collectGarbage();
    const before = process.memoryUsage().heapUsed;
    const pad = "x".repeat(padBytes);
    for (let i = 0; i < count; i++) a.ws.send(offer(`w-unknown-${i}`, { payload: { sdp: pad, type: "data", connectionId: `dc_${i}` } }));
    // Messages on one socket are handled in order: once the marker reaches bob, the flood was read.
    a.ws.send(offer(bob.peerId, { payload: { type: "data", connectionId: "dc_marker" } }));
    await until(() => b.messages.length === 2, "the marker OFFER");
    expect(b.messages[1]).toMatchObject({ type: "OFFER", payload: { connectionId: "dc_marker" } });
    collectGarbage();
    const grown = process.memoryUsage().heapUsed - before;
    // Queued, the offers would hold ~88 MiB of strings; dropped, they leave nothing behind.
    expect(grown).toBeLessThan(16 * 1024 * 1024);
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
    expect(s.logs).toEqual([]);
  });

  it("closes a socket that sends non-JSON with 1008, a short reason and one log line", async () => {
    const s = await startSignalling();
    const identity = s.identities.issue("127.0.0.1");
    const a = await register(s, identity);
    const closing = closedWith(a.ws);
    a.ws.send("this is not JSON ".repeat(50));
    const { code, reason } = await closing;
    expect(code).toBe(1008);
    expect(reason.length).toBeGreaterThan(0);
    expect(reason.length).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES);
    expect(reason.toString()).toMatch(/not JSON/);
    await new Promise((done) => setTimeout(done, SILENCE_MS));
    expect(s.logs).toHaveLength(1);
    expect(s.logs[0]).toContain(identity.peerId);
    expect(s.logs[0]).not.toMatch(/\n|\bat .*:\d+:\d+/);
  });

  it("closes a socket that sends an unknown type, cutting a long multi-byte reason to 123 bytes", async () => {
    const s = await startSignalling();
    const a = await register(s, s.identities.issue("127.0.0.1"));
    const closing = closedWith(a.ws);
    a.ws.send(JSON.stringify({ type: "€".repeat(300), dst: "x" }));
    const { code, reason } = await closing;
    expect(code).toBe(1008);
    expect(reason.length).toBeLessThanOrEqual(MAX_CLOSE_REASON_BYTES);
    expect(reason.length).toBeGreaterThan(MAX_CLOSE_REASON_BYTES - 3);
    // Cut inside the run of 3-byte characters, between two of them: the client reads valid UTF-8.
    expect(reason.toString()).toMatch(/^not a PeerJS client message: type: unknown \(received "€+$/);
    expect(s.logs).toHaveLength(1);
    expect(s.logs[0]?.length).toBeLessThan(300);
  });

  it("closes a socket that sends a server-only type (EXPIRE), naming it", async () => {
    const s = await startSignalling();
    const alice = s.identities.issue("127.0.0.1");
    const a = await register(s, alice);
    const closing = closedWith(a.ws);
    a.ws.send(JSON.stringify({ type: "EXPIRE", dst: alice.peerId }));
    const { code, reason } = await closing;
    expect(code).toBe(1008);
    expect(reason.toString()).toBe('not a PeerJS client message: type: unknown (received "EXPIRE")');
  });

  it("closes a socket that exceeds the message rate with 1008", async () => {
    const s = await startSignalling();
    const a = await register(s, s.identities.issue("127.0.0.1"));
    const closing = closedWith(a.ws);
    const heartbeat = JSON.stringify({ type: "HEARTBEAT" });
    for (let i = 0; i < 2 * DEFAULT_SIGNALLING_LIMITS.messageBurst; i++) a.ws.send(heartbeat);
    const { code, reason } = await closing;
    expect(code).toBe(1008);
    expect(reason.toString()).toMatch(/messages\/s/);
    expect(s.logs).toHaveLength(1);
  });

  it("closes a socket that exceeds the byte rate with 1008", async () => {
    const s = await startSignalling();
    const a = await register(s, s.identities.issue("127.0.0.1"));
    const closing = closedWith(a.ws);
    const big = JSON.stringify({ type: "HEARTBEAT", pad: "x".repeat(60 * 1024) });
    const frames = Math.ceil((2 * DEFAULT_SIGNALLING_LIMITS.byteBurst) / big.length);
    for (let i = 0; i < frames; i++) a.ws.send(big);
    const { code, reason } = await closing;
    expect(code).toBe(1008);
    expect(reason.toString()).toMatch(/bytes\/s/);
  });

  it("survives a frame over the size limit: peer's error is one log line", async () => {
    const s = await startSignalling();
    const a = await register(s, s.identities.issue("127.0.0.1"));
    const closing = closedWith(a.ws);
    a.ws.send(JSON.stringify({ type: "HEARTBEAT", pad: "x".repeat(70 * 1024) }));
    expect((await closing).code).toBe(1009);
    await until(() => s.logs.length > 0, "the log line");
    expect(s.logs).toEqual(["peerjs: Max payload size exceeded"]);
    await register(s, s.identities.issue("127.0.0.1"));
  });

  it("closes the signalling socket when the identity is revoked, and drops messages to it", async () => {
    const s = await startSignalling();
    const alice = s.identities.issue("127.0.0.1");
    const bob = s.identities.issue("127.0.0.1");
    const a = await register(s, alice);
    const b = await register(s, bob);
    const closing = closedWith(b.ws);
    s.identities.revoke(bob.peerId, "left the job");
    const { code, reason } = await closing;
    expect(code).toBe(1008);
    expect(reason.toString()).toBe("identity revoked: left the job");
    // A revoked id cannot come back.
    const again = await connect(urlFor(s, queryOf(bob)));
    expect(again.ok ? "opened" : again.status).toBe(403);
    a.ws.send(offer(bob.peerId));
    await new Promise((done) => setTimeout(done, SILENCE_MS));
    expect(a.ws.readyState).toBe(WebSocket.OPEN);
  });

  it("replaces an id's socket with its newest one, which receives OPEN", async () => {
    const s = await startSignalling();
    const identity = s.identities.issue("127.0.0.1");
    const first = await register(s, identity);
    const closing = closedWith(first.ws);
    const second = await register(s, identity);
    expect(second.messages[0]).toEqual({ type: "OPEN" });
    expect((await closing).code).toBe(1000);
  });

  it("stops listening for revokes and closes its sockets on route.close()", async () => {
    const identities = new IdentityRegistry();
    const unsubscribed = vi.fn();
    const onRevoke = identities.onRevoke.bind(identities);
    vi.spyOn(identities, "onRevoke").mockImplementation((listener) => {
      const unsubscribe = onRevoke(listener);
      return () => {
        unsubscribed();
        return unsubscribe();
      };
    });
    const s = await startSignalling({ identities });
    const a = await register(s, identities.issue("127.0.0.1"));
    const closing = closedWith(a.ws);
    running.splice(running.indexOf(s), 1);
    await s.close();
    await closing;
    expect(unsubscribed).toHaveBeenCalledTimes(1);
  });
});
