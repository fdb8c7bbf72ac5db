import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { loadTlsFiles, selfSignedTls, TlsConfigError } from "../src/http/tls.ts";
import { startServer, type ServerHandle } from "../src/server.ts";

/** How long a request or socket on loopback may take. */
const IO_TIMEOUT_MS = 5_000;

/** GET over HTTPS trusting only `ca` (the self-signed certificate), so the name check is real. */
function getTrusting(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = https.get(url, { ca, timeout: IO_TIMEOUT_MS }, (res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => done({ status: res.statusCode ?? 0, body }));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${IO_TIMEOUT_MS} ms`)));
    req.on("error", fail);
  });
}

describe("TLS credentials", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "crowdtrain-tls-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("a self-signed certificate is made once, kept private, reused, and remade when a name is new", async () => {
    const first = await selfSignedTls(join(dir, "a"), ["localhost", "127.0.0.1"]);
    expect(first.created).toBe(true);
    expect(statSync(join(dir, "a", "self-signed.key")).mode & 0o777).toBe(0o600);
    const again = await selfSignedTls(join(dir, "a"), ["127.0.0.1"]);
    expect(again).toMatchObject({ created: false, cert: first.cert });
    const wider = await selfSignedTls(join(dir, "a"), ["127.0.0.1", "10.1.2.3"]);
    expect(wider.created).toBe(true);
    expect(wider.cert).not.toBe(first.cert);
  });

  it("a certificate near its end is replaced", async () => {
    const old = await selfSignedTls(join(dir, "b"), ["localhost"], new Date(Date.now() - 360 * 86_400_000));
    expect((await selfSignedTls(join(dir, "b"), ["localhost"])).cert).not.toBe(old.cert);
  });

  it("an operator's files are refused with a clear error when missing or not a pair", async () => {
    const a = await selfSignedTls(join(dir, "c"), ["localhost"]);
    const b = await selfSignedTls(join(dir, "d"), ["localhost"]);
    writeFileSync(join(dir, "a.crt"), a.cert);
    writeFileSync(join(dir, "b.key"), b.key);
    await expect(loadTlsFiles(join(dir, "a.crt"), join(dir, "b.key"))).rejects.toThrow(TlsConfigError);
    await expect(loadTlsFiles(join(dir, "missing.crt"), join(dir, "b.key"))).rejects.toThrow(/cannot read the TLS certificate .*missing\.crt/);
    writeFileSync(join(dir, "a.key"), a.key);
    expect((await loadTlsFiles(join(dir, "a.crt"), join(dir, "a.key"))).cert).toBe(a.cert);
  });
});

describe("a server with a certificate", () => {
  let dir: string;
  let server: ServerHandle;
  let cert: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "crowdtrain-tls-server-"));
    const tls = await selfSignedTls(dir, ["127.0.0.1"]);
    cert = tls.cert;
    server = await startServer({ port: 0, host: "127.0.0.1", tls, lab: true });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers over HTTPS, with its https URL, and a client that trusts the certificate verifies the name", async () => {
    expect(server.url).toBe(`https://127.0.0.1:${server.port}`);
    const health = await getTrusting(`${server.url}/api/health`, cert);
    expect(health).toMatchObject({ status: 200 });
    expect(JSON.parse(health.body)).toEqual({ ok: true });
    // Plain http to the TLS port is not served.
    await expect(fetch(`http://127.0.0.1:${server.port}/api/health`, { signal: AbortSignal.timeout(IO_TIMEOUT_MS) })).rejects.toThrow();
  });

  it("its PeerJS socket opens over WSS", async () => {
    const identity = await new Promise<{ peerId: string; peerKey: string; peerToken: string }>((done, fail) => {
      const req = https.request(`${server.url}/api/lab/identity`, { method: "POST", ca: cert, timeout: IO_TIMEOUT_MS }, (res) => {
        let body = "";
        res.on("data", (chunk: Buffer) => (body += chunk.toString()));
        res.on("end", () => done(JSON.parse(body) as { peerId: string; peerKey: string; peerToken: string }));
      });
      req.on("error", fail);
      req.end();
    });
    const url = `wss://127.0.0.1:${server.port}/peerjs/peerjs?key=${identity.peerKey}&id=${identity.peerId}&token=${identity.peerToken}`;
    const ws = new WebSocket(url, { ca: cert });
    const first = await new Promise<string>((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`no message within ${IO_TIMEOUT_MS} ms`)), IO_TIMEOUT_MS);
      ws.once("message", (data: Buffer) => {
        clearTimeout(timer);
        done(data.toString());
      });
      ws.once("error", fail);
    });
    expect(JSON.parse(first)).toMatchObject({ type: "OPEN" });
    ws.close();
  });
});
