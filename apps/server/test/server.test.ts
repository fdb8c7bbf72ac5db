import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import WebSocket from "ws";
import { startServer, type ServerHandle } from "../src/server.ts";
import { runFixture } from "./fixtures/run-fixture.ts";

/** How long a WebSocket may take to open, answer or close on loopback. */
const WS_TIMEOUT_MS = 5_000;
/** How long a process that started and closed a server may take to exit by itself. */
const CHILD_EXIT_TIMEOUT_MS = 20_000;

const open: ServerHandle[] = [];

async function start(options: Parameters<typeof startServer>[0] = {}): Promise<ServerHandle> {
  const handle = await startServer({ port: 0, ...options });
  open.push(handle);
  return handle;
}

afterEach(async () => {
  vi.unstubAllEnvs();
  await Promise.all(open.splice(0).map((handle) => handle.close()));
});

/** Resolves with the first message, or rejects with the socket's error or after WS_TIMEOUT_MS. */
function firstMessage(ws: WebSocket): Promise<string> {
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no WebSocket message within ${WS_TIMEOUT_MS} ms`)), WS_TIMEOUT_MS);
    ws.once("message", (data: Buffer) => {
      clearTimeout(timer);
      done(data.toString());
    });
    ws.once("error", (error) => {
      clearTimeout(timer);
      fail(error);
    });
  });
}

type Credentials = { peerId: string; peerKey: string; peerToken: string };

/** An identity from a lab server (the only way to one without joining a job). */
async function labIdentity(url: string): Promise<Credentials> {
  const response = await fetch(`${url}/api/lab/identity`, { method: "POST" });
  if (!response.ok) throw new Error(`POST /api/lab/identity: ${response.status}`);
  return (await response.json()) as Credentials;
}

function peerUrl(url: string, c: Credentials): string {
  return `${url.replace("http", "ws")}/peerjs/peerjs?key=${c.peerKey}&id=${c.peerId}&token=${c.peerToken}`;
}

async function getJson(url: string): Promise<Record<string, unknown>> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
  return (await response.json()) as Record<string, unknown>;
}

function closed(ws: WebSocket): Promise<void> {
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`WebSocket not closed within ${WS_TIMEOUT_MS} ms`)), WS_TIMEOUT_MS);
    ws.once("close", () => {
      clearTimeout(timer);
      done();
    });
  });
}

describe("startServer", () => {
  it("serves health and a config without ICE servers by default", async () => {
    vi.stubEnv("CROWDTRAIN_ICE_SERVERS", "");
    const { url } = await start();
    expect(await getJson(`${url}/api/health`)).toEqual({ ok: true });
    expect(await getJson(`${url}/api/config`)).toEqual({ peerPath: "/peerjs", iceServers: [], iceTransportPolicy: "all" });
  });

  it("hands out ICE servers from the option or from CROWDTRAIN_ICE_SERVERS", async () => {
    const own = [{ urls: "turn:turn.lan:3478", username: "u", credential: "p" }];
    const fromOption = await start({ iceServers: own });
    expect((await getJson(`${fromOption.url}/api/config`)).iceServers).toEqual(own);
    vi.stubEnv("CROWDTRAIN_ICE_SERVERS", '[{"urls":["stun:10.0.0.1:3478"]}]');
    const fromEnv = await start();
    expect((await getJson(`${fromEnv.url}/api/config`)).iceServers).toEqual([{ urls: ["stun:10.0.0.1:3478"] }]);
  });

  it.each([
    ["not json", /CROWDTRAIN_ICE_SERVERS is not valid JSON/],
    ['{"urls":"stun:x"}', /must be a JSON array/],
    ['[{"urls":"https://x"}]', /CROWDTRAIN_ICE_SERVERS\[0\]\.urls has "https:\/\/x"/],
    ['[{"urls":"stun:x","password":"p"}]', /unknown keys: password/],
  ])("rejects CROWDTRAIN_ICE_SERVERS=%s with a clear error", async (value, message) => {
    vi.stubEnv("CROWDTRAIN_ICE_SERVERS", value);
    await expect(startServer({ port: 0 })).rejects.toThrow(message);
  });

  it("runs the PeerJS signalling server under /peerjs, without discovery, for issued identities only", async () => {
    const { url } = await start({ lab: true });
    expect((await getJson(`${url}/peerjs/`)).name).toBe("PeerJS Server");
    expect((await fetch(`${url}/peerjs/peerjs/peers`)).status).not.toBe(200);
    // The public default key and a made-up id: refused at the handshake.
    await expect(firstMessage(new WebSocket(`${url.replace("http", "ws")}/peerjs/peerjs?key=peerjs&id=anyone&token=t`))).rejects.toThrow(/403/);

    const ws = new WebSocket(peerUrl(url, await labIdentity(url)));
    expect(JSON.parse(await firstMessage(ws))).toEqual({ type: "OPEN" });
    ws.close();
    await closed(ws);
  });

  it("serves the lab page and its identities only when started with lab: true", async () => {
    const plain = await start();
    expect((await fetch(`${plain.url}/api/lab/identity`, { method: "POST" })).status).toBe(404);
    expect((await fetch(`${plain.url}/lab.html`)).status).toBe(404);
    expect((await fetch(`${plain.url}/worker/lab.html`)).status).toBe(404);
  });

  it("serves the lab build (its page and its /lab/assets) only with lab: true, and nothing of it from the product build", async () => {
    const root = mkdtempSync(join(tmpdir(), "crowdtrain-builds-"));
    try {
      const write = (file: string, text: string): void => {
        mkdirSync(join(root, file, ".."), { recursive: true });
        writeFileSync(join(root, file), text);
      };
      write("web/worker/index.html", "worker page");
      write("lab/worker/lab.html", "lab page");
      write("lab/assets/lab-1234.js", "lab script");
      const dirs = { webDir: join(root, "web"), labDir: join(root, "lab") };
      const lab = await start({ lab: true, ...dirs });
      expect(await (await fetch(`${lab.url}/lab.html`)).text()).toBe("lab page");
      expect(await (await fetch(`${lab.url}/lab/assets/lab-1234.js`)).text()).toBe("lab script");
      const plain = await start(dirs);
      expect(await (await fetch(`${plain.url}/`)).text()).toBe("worker page");
      for (const path of ["/lab.html", "/lab/assets/lab-1234.js", "/assets/lab-1234.js", "/lab/worker/lab.html"]) expect((await fetch(`${plain.url}${path}`)).status, path).toBe(404);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("refuses WebSocket upgrades on paths nobody serves", async () => {
    const { url } = await start();
    const ws = new WebSocket(`${url.replace("http", "ws")}/nope`);
    await expect(firstMessage(ws)).rejects.toThrow(/404/);
  });

  it("close() drops WebSocket clients and releases the port", async () => {
    const handle = await startServer({ port: 0, lab: true });
    const ws = new WebSocket(peerUrl(handle.url, await labIdentity(handle.url)));
    await firstMessage(ws);
    const wsClosed = closed(ws);
    await handle.close();
    await wsClosed;
    await new Promise<void>((done, fail) => {
      const probe = createServer();
      probe.once("error", fail);
      probe.listen(handle.port, "127.0.0.1", () => probe.close(() => done()));
    });
  });

  it("leaves nothing running after close(): a process that used it exits by itself", async () => {
    const { code, output } = await runFixture("apps/server/test/fixtures/start-stop.ts", CHILD_EXIT_TIMEOUT_MS);
    expect(output).toContain("closed");
    expect({ code, output }).toEqual({ code: 0, output: "closed\n" });
  });
});
