import { describe, expect, it } from "vitest";
import { checkIceServers, MessageError, parseSignallingConfig } from "../src/index.ts";

const SOURCE = "CROWDTRAIN_ICE_SERVERS";
const problemOf = (input: unknown): string => {
  const checked = checkIceServers(input, SOURCE);
  if (checked.ok) throw new Error(`accepted ${JSON.stringify(input)}`);
  return checked.problem;
};

describe("ICE servers (the operator's, handed to every browser)", () => {
  it("accepts STUN/TURN servers, with or without credentials, as given", () => {
    const servers = [
      { urls: "stun:stun.example.org:3478" },
      { urls: ["turn:10.0.0.1:3478?transport=udp", "turns:turn.example.org:5349"], username: "u", credential: "p" },
      { urls: "stuns:stun.example.org" },
    ];
    expect(checkIceServers(servers, SOURCE)).toEqual({ ok: true, value: servers });
    expect(checkIceServers([], SOURCE)).toEqual({ ok: true, value: [] });
  });

  it("names the entry and the URL of a scheme other than stun:, stuns:, turn:, turns:", () => {
    expect(problemOf([{ urls: "https://x" }])).toBe(`${SOURCE}[0].urls has "https://x"; expected stun:, stuns:, turn: or turns: URLs`);
    expect(problemOf([{ urls: "stun:a" }, { urls: ["turn:b", "http://c"] }])).toMatch(/^CROWDTRAIN_ICE_SERVERS\[1\]\.urls\[1\] has "http:\/\/c"/);
    expect(problemOf([{ urls: "stun: spaced" }])).toMatch(/\[0\]\.urls has/);
  });

  it("refuses a list that is not an array", () => {
    expect(problemOf({ urls: "stun:x" })).toBe(`${SOURCE} must be a JSON array of ICE servers, got object`);
    expect(problemOf("stun:x")).toMatch(/must be a JSON array of ICE servers, got string/);
  });

  it("names every unknown key, a missing or empty urls, a non-string credential, a non-object entry", () => {
    expect(problemOf([{ urls: "stun:x", password: "p", ttl: 1 }])).toBe(`${SOURCE}[0] has unknown keys: password, ttl`);
    expect(problemOf([{ username: "u" }])).toBe(`${SOURCE}[0].urls is required`);
    expect(problemOf([{ urls: [] }])).toMatch(/\[0\]\.urls must be a URL string or a non-empty array of them/);
    expect(problemOf([{ urls: 3478 }])).toMatch(/\[0\]\.urls must be a URL string or a non-empty array of them/);
    expect(problemOf([{ urls: "turn:x", credential: 7 }])).toBe(`${SOURCE}[0].credential must be a string`);
    expect(problemOf([null])).toMatch(/^CROWDTRAIN_ICE_SERVERS\[0\] must be an object like/);
  });

  it("lists every problem, not just the first", () => {
    const problem = problemOf([{ urls: "ftp://a" }, { urls: "stun:b", extra: true }]);
    expect(problem).toMatch(/\[0\]\.urls has "ftp:\/\/a"/);
    expect(problem).toMatch(/\[1\] has unknown keys: extra/);
  });
});

describe("GET /api/config (parsed by the worker)", () => {
  it("parses the server's answer and ignores keys a newer server may add", () => {
    const config = { peerPath: "/peerjs", iceServers: [{ urls: "stun:10.0.0.1:3478" }] };
    expect(parseSignallingConfig({ ...config, later: 1 })).toEqual(config);
  });

  it("throws MessageError naming what is wrong", () => {
    expect(() => parseSignallingConfig({ peerPath: "/peerjs", iceServers: {} })).toThrow(MessageError);
    expect(() => parseSignallingConfig({ peerPath: "/peerjs", iceServers: [{ urls: "http://x" }] })).toThrow(/config\.iceServers\[0\]\.urls has "http:\/\/x"/);
    expect(() => parseSignallingConfig({ iceServers: [] })).toThrow(/config\.peerPath is required/);
    expect(() => parseSignallingConfig({ peerPath: "peerjs", iceServers: [] })).toThrow(/absolute path/);
    expect(() => parseSignallingConfig(null)).toThrow(/bad \/api\/config: config must be an object/);
  });
});
