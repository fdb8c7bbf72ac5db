import { describe, expect, it } from "vitest";
import { parseFlags, UsageError, type Flags } from "../src/cli/flags.ts";

const parse = (argv: string[], env: NodeJS.ProcessEnv = {}): Flags => {
  const flags = parseFlags(argv, env);
  if (flags === "help") throw new Error("unexpected help");
  return flags;
};

describe("server flags", () => {
  it("serve plain HTTP, trusting no proxy, by default", () => {
    expect(parse([])).toMatchObject({ tls: undefined, trustProxy: [] });
  });

  it("take a certificate and key together, from flags or the environment, as absolute paths", () => {
    expect(parse(["--tls-cert", "a.crt", "--tls-key=a.key"]).tls).toEqual({ kind: "files", cert: expect.stringMatching(/^\/.*a\.crt$/), key: expect.stringMatching(/^\/.*a\.key$/) });
    expect(parse([], { CROWDTRAIN_TLS_CERT: "/x.crt", CROWDTRAIN_TLS_KEY: "/x.key" }).tls).toEqual({ kind: "files", cert: "/x.crt", key: "/x.key" });
    expect(() => parse(["--tls-cert", "a.crt"])).toThrow(/go together/);
    expect(() => parse(["--tls-key", "a.key"])).toThrow(UsageError);
  });

  it("make a self-signed certificate only when no files are given", () => {
    expect(parse(["--tls-self-signed"]).tls).toEqual({ kind: "self-signed" });
    expect(() => parse(["--tls-self-signed", "--tls-cert", "a.crt", "--tls-key", "a.key"])).toThrow(/not both/);
  });

  it("read the trusted proxies as a comma-separated list", () => {
    expect(parse(["--trust-proxy", "loopback, 10.0.0.0/8"]).trustProxy).toEqual(["loopback", "10.0.0.0/8"]);
    expect(parse([], { CROWDTRAIN_TRUST_PROXY: "192.0.2.1" }).trustProxy).toEqual(["192.0.2.1"]);
  });

  it("take a TURN server and its secret together, and a relay-only policy", () => {
    expect(parse(["--turn-url", "turn:10.0.0.1:3478,turns:turn.example.org:5349", "--turn-secret", "s"]).turn).toEqual({ urls: ["turn:10.0.0.1:3478", "turns:turn.example.org:5349"], secret: "s" });
    expect(() => parse(["--turn-url", "turn:10.0.0.1:3478"])).toThrow(/go together/);
    expect(parse([]).iceTransportPolicy).toBe("all");
    expect(parse(["--ice-transport-policy", "relay"]).iceTransportPolicy).toBe("relay");
    expect(() => parse(["--ice-transport-policy", "none"])).toThrow(/all or relay/);
  });

  it("log text at info by default; json and a level from flags or the environment; anything else refused", () => {
    expect(parse([])).toMatchObject({ logFormat: "text", logLevel: "info" });
    expect(parse(["--log-format", "json", "--log-level=warn"])).toMatchObject({ logFormat: "json", logLevel: "warn" });
    expect(parse([], { CROWDTRAIN_LOG_FORMAT: "json", CROWDTRAIN_LOG_LEVEL: "debug" })).toMatchObject({ logFormat: "json", logLevel: "debug" });
    expect(() => parse(["--log-format", "xml"])).toThrow(/--log-format must be one of text, json/);
    expect(() => parse(["--log-level", "verbose"])).toThrow(UsageError);
  });

  it("take a heartbeat timeout of 500 ms or more, 4 s by default", () => {
    expect(parse([])).toMatchObject({ heartbeatTimeoutMs: 4_000 });
    expect(parse(["--heartbeat-timeout-ms", "500"])).toMatchObject({ heartbeatTimeoutMs: 500 });
    expect(() => parse(["--heartbeat-timeout-ms", "300"])).toThrow(/--heartbeat-timeout-ms must be at least 500, got 300/);
  });
});
