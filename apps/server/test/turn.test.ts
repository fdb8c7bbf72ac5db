import { createHmac } from "node:crypto";
import { parseSignallingConfig } from "@crowdtrain/protocol";
import { afterEach, describe, expect, it } from "vitest";
import { startServer, type ServerHandle } from "../src/server.ts";
import { checkTurnOptions, DEFAULT_TURN_TTL_S, mintTurnCredentials, TurnConfigError } from "../src/signalling/turn.ts";

const TURN = { urls: ["turn:10.88.0.1:3478?transport=udp"], secret: "a-shared-secret-of-some-length" };

describe("TURN credentials", () => {
  it("name the worker and their expiry, and are the HMAC-SHA1 of that name under the shared secret", () => {
    const now = Date.UTC(2026, 11, 1, 12);
    const entry = mintTurnCredentials(TURN, "w-abc", now);
    const expiry = now / 1000 + DEFAULT_TURN_TTL_S;
    expect(entry).toMatchObject({ urls: TURN.urls, username: `${expiry}:w-abc` });
    // coturn recomputes exactly this from its static-auth-secret.
    expect(entry.credential).toBe(createHmac("sha1", TURN.secret).update(`${expiry}:w-abc`).digest("base64"));
    expect(mintTurnCredentials({ ...TURN, secret: `${TURN.secret}!` }, "w-abc", now).credential).not.toBe(entry.credential);
    expect(mintTurnCredentials({ ...TURN, ttlSeconds: 60 }, "w-abc", now).username).toBe(`${now / 1000 + 60}:w-abc`);
  });

  it("refuse URLs that are not turn: or turns:, and short secrets", () => {
    expect(() => checkTurnOptions({ ...TURN, urls: ["stun:10.0.0.1:3478"] })).toThrow(TurnConfigError);
    expect(() => checkTurnOptions({ ...TURN, urls: ["https://turn.example.org"] })).toThrow(/not a turn: or turns: URL/);
    expect(() => checkTurnOptions({ ...TURN, urls: [] })).toThrow(/at least one/);
    expect(() => checkTurnOptions({ ...TURN, secret: "short" })).toThrow(/at least 16/);
    expect(checkTurnOptions({ ...TURN, urls: ["turns:turn.example.org:5349"] }).urls).toEqual(["turns:turn.example.org:5349"]);
  });
});

describe("/api/config with TURN", () => {
  const open: ServerHandle[] = [];
  afterEach(async () => {
    await Promise.all(open.splice(0).map((server) => server.close()));
  });

  it("gives a worker its own credentials only when it shows its identity; a wrong token is a 401", async () => {
    const server = await startServer({ port: 0, lab: true, turn: TURN, iceTransportPolicy: "relay" });
    open.push(server);
    const anonymous = parseSignallingConfig(await (await fetch(`${server.url}/api/config`)).json());
    expect(anonymous).toEqual({ peerPath: "/peerjs", iceServers: [], iceTransportPolicy: "relay" });

    const identity = (await (await fetch(`${server.url}/api/lab/identity`, { method: "POST" })).json()) as { peerId: string; sessionToken: string };
    const asWorker = await fetch(`${server.url}/api/config`, { headers: { "x-crowdtrain-peer": identity.peerId, authorization: `Bearer ${identity.sessionToken}` } });
    expect(asWorker.headers.get("cache-control")).toBe("no-store");
    const config = parseSignallingConfig(await asWorker.json());
    expect(config.iceServers).toHaveLength(1);
    expect(config.iceServers[0]).toMatchObject({ urls: TURN.urls, username: expect.stringMatching(new RegExp(`^\\d+:${identity.peerId}$`)) });

    const wrong = await fetch(`${server.url}/api/config`, { headers: { "x-crowdtrain-peer": identity.peerId, authorization: "Bearer nope" } });
    expect(wrong.status).toBe(401);
  });

  it("a relay-only policy without any TURN server is refused at start", async () => {
    await expect(startServer({ port: 0, iceTransportPolicy: "relay", iceServers: [{ urls: "stun:10.0.0.1:3478" }] })).rejects.toThrow(/relay-only ICE policy needs a TURN server/);
  });
});
