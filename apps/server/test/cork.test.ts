import type { AddressInfo } from "node:net";
import { Duplex } from "node:stream";
import { describe, expect, it } from "vitest";
import WebSocket, { WebSocketServer } from "ws";
import { tcpOf } from "../src/cluster/hub.ts";

/** Every wait of this test. */
const WAIT_MS = 5_000;

describe("corking a member's socket (ClusterHub.dispatch)", () => {
  it("reaches the TCP socket under a ws WebSocket, so a commit and the next round leave in one write, and both still arrive", async () => {
    const server = new WebSocketServer({ port: 0, host: "127.0.0.1" });
    try {
      await new Promise<void>((resolve) => server.once("listening", resolve));
      const accepted = new Promise<WebSocket>((resolve) => server.once("connection", resolve));
      const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`);
      const received: string[] = [];
      const both = new Promise<void>((resolve) => client.on("message", (data: Buffer) => received.push(data.toString()) === 2 && resolve()));
      const ws = await accepted;
      // If a later ws hid its socket, corking would silently stop: this test says so first.
      const tcp = tcpOf(ws);
      expect(tcp).toBeInstanceOf(Duplex);
      tcp?.cork();
      ws.send("commit");
      ws.send("round");
      expect(tcp?.writableCorked).toBe(1);
      tcp?.uncork();
      expect(tcp?.writableCorked).toBe(0);
      await Promise.race([both, new Promise((_, fail) => setTimeout(() => fail(new Error(`not both messages within ${WAIT_MS} ms`)), WAIT_MS))]);
      expect(received).toEqual(["commit", "round"]);
      client.close();
    } finally {
      server.close();
    }
  });
});
