import { mkdtempSync, rmSync } from "node:fs";
import type http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseJob } from "@crowdtrain/protocol";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { clientAddressOf, TrustProxyError } from "../src/http/client-address.ts";
import { startServer, type ServerHandle } from "../src/server.ts";

/** How long a WebSocket handshake on loopback may take. */
const WS_TIMEOUT_MS = 5_000;

const request = (remoteAddress: string, forwardedFor?: string): http.IncomingMessage =>
  ({ socket: { remoteAddress }, connection: { remoteAddress }, headers: forwardedFor === undefined ? {} : { "x-forwarded-for": forwardedFor } }) as unknown as http.IncomingMessage;

describe("the client address", () => {
  it("is the socket's peer when no proxy is trusted, whatever X-Forwarded-For says", () => {
    expect(clientAddressOf([])(request("127.0.0.1", "203.0.113.7"))).toBe("127.0.0.1");
  });

  it("is the forwarded client when the peer is a trusted proxy, and only then", () => {
    const address = clientAddressOf(["loopback", "10.0.0.0/8"]);
    expect(address(request("127.0.0.1", "203.0.113.7"))).toBe("203.0.113.7");
    // Each trusted hop is skipped, from the right: the first untrusted one is the client.
    expect(address(request("10.0.0.2", "198.51.100.1, 203.0.113.7, 10.0.0.9"))).toBe("203.0.113.7");
    expect(address(request("192.0.2.5", "203.0.113.7"))).toBe("192.0.2.5");
    expect(address(request("127.0.0.1"))).toBe("127.0.0.1");
  });

  it("refuses a trust list it cannot read", () => {
    expect(() => clientAddressOf(["not-an-address"])).toThrow(TrustProxyError);
  });
});

describe("a server behind a trusted proxy", () => {
  const job = parseJob({ name: "proxy-test", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1 }, batchSize: 30, rounds: 5 });
  let datasets: string;
  const servers: ServerHandle[] = [];

  beforeAll(async () => {
    datasets = mkdtempSync(join(tmpdir(), "crowdtrain-datasets-"));
    await buildMnistDataset(join(datasets, "mnist"));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(servers.map((server) => server.close()));
    rmSync(datasets, { recursive: true, force: true });
  });

  const start = async (trustProxy: string[]): Promise<ServerHandle> => {
    const server = await startServer({ port: 0, trustProxy, training: { job, datasetsDir: datasets, hellosPerSecond: 1 } });
    servers.push(server);
    return server;
  };

  /** Opens /ws as if forwarded for `client`; resolves "open" or the refusal's status. */
  const hello = (server: ServerHandle, client: string): Promise<string> =>
    new Promise((done, fail) => {
      const ws = new WebSocket(`${server.url.replace("http", "ws")}/ws`, { headers: { "x-forwarded-for": client } });
      let settled = false;
      const settle = (outcome: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        outcome();
      };
      const timer = setTimeout(() => settle(() => fail(new Error(`no answer to the handshake within ${WS_TIMEOUT_MS} ms`))), WS_TIMEOUT_MS);
      ws.once("open", () => settle(() => (ws.close(), done("open"))));
      // A refusal surfaces here first, then again as an error, which settle() then ignores.
      ws.once("unexpected-response", (_req, res) => settle(() => (res.resume(), done(String(res.statusCode)))));
      ws.once("error", (error) => settle(() => fail(error)));
    });

  it("rate-limits joins per forwarded client when the proxy is trusted, per socket peer when not", async () => {
    const trusting = await start(["loopback"]);
    expect(await hello(trusting, "203.0.113.7")).toBe("open");
    expect(await hello(trusting, "203.0.113.8")).toBe("open");
    expect(await hello(trusting, "203.0.113.7")).toBe("429");
    const plain = await start([]);
    expect(await hello(plain, "203.0.113.7")).toBe("open");
    // Both come from 127.0.0.1 as far as this server knows: the header is anyone's to send.
    expect(await hello(plain, "203.0.113.8")).toBe("429");
  });
});
