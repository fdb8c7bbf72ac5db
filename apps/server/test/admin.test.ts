import type { AddressInfo } from "node:net";
import http from "node:http";
import express from "express";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createAdminRouter, MISSING_TOKEN_MESSAGE, WRONG_TOKEN_MESSAGE, type Operator, type OperatorEvent } from "../src/admin/routes.ts";
import { AdminTokenError, bearerToken, generateAdminToken, tokenMatches, validateAdminToken } from "../src/admin/token.ts";

describe("admin tokens", () => {
  it("generates 128 random bits as 32 hex digits", () => {
    const a = generateAdminToken();
    const b = generateAdminToken();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(a).not.toBe(b);
  });

  it("compares in constant time, whatever the lengths", () => {
    expect(tokenMatches("test-token", "test-token")).toBe(true);
    expect(tokenMatches("test-token", "test-tokeN")).toBe(false);
    expect(tokenMatches("test-token", "test")).toBe(false);
    expect(tokenMatches("test-token", "test-token-and-more")).toBe(false);
    expect(tokenMatches("test-token", "")).toBe(false);
  });

  it("reads only well-formed bearer headers", () => {
    expect(bearerToken("Bearer abc.def")).toBe("abc.def");
    expect(bearerToken("bearer   abc ")).toBe("abc");
    expect(bearerToken(undefined)).toBeUndefined();
    expect(bearerToken("Basic abc")).toBeUndefined();
    expect(bearerToken("Bearer")).toBeUndefined();
    expect(bearerToken("Bearer a b")).toBeUndefined();
  });

  it("refuses operator-chosen tokens that are short or not printable ASCII, naming the source", () => {
    expect(validateAdminToken("test-token", "--admin-token")).toBe("test-token");
    expect(() => validateAdminToken("short", "--admin-token")).toThrow(/--admin-token must be 8 to 256 characters long, got 5/);
    expect(() => validateAdminToken("with space", "CROWDTRAIN_ADMIN_TOKEN")).toThrow(AdminTokenError);
    expect(() => validateAdminToken("tökentöken", "x")).toThrow(/visible ASCII/);
  });
});

/** A coordinator stand-in that applies operator events the way the real one does. */
class FakeOperator implements Operator {
  events: OperatorEvent[] = [];
  status: "waiting" | "running" | "paused" | "done" = "running";
  maxRounds: number | undefined = 20;
  hasEpochLimit = true;
  now = () => 1234;

  state() {
    return { status: this.status, maxRounds: this.maxRounds, committedRound: 7 };
  }

  dispatch(event: OperatorEvent): void {
    this.events.push(event);
    if (event.type === "pause") this.status = "paused";
    if (event.type === "resume") this.status = "running";
    if (event.type === "stop") this.status = "done";
    if (event.type === "set-max-rounds") this.maxRounds = event.rounds;
  }
}

const TOKEN = "secret-token-1";
let operator: FakeOperator;
let server: http.Server;
let base: string;

beforeAll(async () => {
  const app = express();
  // The router reads the operator through this indirection, so each test gets a fresh one.
  app.use(
    createAdminRouter(TOKEN, {
      state: () => operator.state(),
      dispatch: (event) => operator.dispatch(event),
      get hasEpochLimit() {
        return operator.hasEpochLimit;
      },
      now: () => operator.now(),
    }),
  );
  app.use((_req, res) => res.status(404).send("not admin"));
  server = http.createServer(app);
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((done) => server.close(done));
});

beforeEach(() => {
  operator = new FakeOperator();
});

async function call(path: string, options: { token?: string | null; body?: string; method?: string; contentType?: string } = {}) {
  const headers: Record<string, string> = {};
  const token = options.token === undefined ? TOKEN : options.token;
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (options.body !== undefined) headers["content-type"] = options.contentType ?? "application/json";
  const response = await fetch(`${base}${path}`, { method: options.method ?? "POST", headers, body: options.body });
  return { status: response.status, headers: response.headers, json: (await response.json()) as Record<string, unknown> };
}

describe("admin routes", () => {
  it.each(["/api/admin/pause", "/api/admin/resume", "/api/admin/stop", "/api/admin/target"])("%s answers 401 without a token, or with a wrong one, and changes nothing", async (path) => {
    const without = await call(path, { token: null, body: '{"rounds":3}' });
    expect(without.status).toBe(401);
    expect(without.json.error).toBe(MISSING_TOKEN_MESSAGE);
    expect(without.headers.get("www-authenticate")).toMatch(/^Bearer/);
    const wrong = await call(path, { token: "secret-token-2", body: '{"rounds":3}' });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error).toBe(WRONG_TOKEN_MESSAGE);
    expect(operator.events).toEqual([]);
  });

  it("answers 401 to a check with a wrong token and 200 with the right one", async () => {
    expect((await call("/api/admin/check", { method: "GET", token: "nope-nope" })).status).toBe(401);
    const right = await call("/api/admin/check", { method: "GET" });
    expect(right).toMatchObject({ status: 200, json: { ok: true, status: "running", round: 7, targetRounds: 20 } });
  });

  it("pauses, resumes and stops with the token, feeding the coordinator's events", async () => {
    expect((await call("/api/admin/pause")).json).toMatchObject({ ok: true, status: "paused" });
    expect((await call("/api/admin/resume")).json).toMatchObject({ ok: true, status: "running" });
    expect((await call("/api/admin/stop", { body: '{"reason":"enough"}' })).json).toMatchObject({ ok: true, status: "done" });
    expect(operator.events).toEqual([
      { type: "pause", now: 1234 },
      { type: "resume", now: 1234 },
      { type: "stop", reason: "enough", now: 1234 },
    ]);
  });

  it("stops without a body with a default reason", async () => {
    expect((await call("/api/admin/stop")).status).toBe(200);
    expect(operator.events).toEqual([{ type: "stop", reason: "stopped by the operator", now: 1234 }]);
  });

  it("sets the target number of rounds, or removes it for a job with an epoch limit", async () => {
    expect((await call("/api/admin/target", { body: '{"rounds":12}' })).json).toMatchObject({ ok: true, targetRounds: 12 });
    expect((await call("/api/admin/target", { body: '{"rounds":null}' })).json).toMatchObject({ ok: true, targetRounds: null });
    expect(operator.events).toEqual([
      { type: "set-max-rounds", rounds: 12, now: 1234 },
      { type: "set-max-rounds", rounds: undefined, now: 1234 },
    ]);
  });

  it("refuses to remove the round limit of a job without an epoch limit", async () => {
    operator.hasEpochLimit = false;
    const answer = await call("/api/admin/target", { body: '{"rounds":null}' });
    expect(answer.status).toBe(400);
    expect(answer.json.error).toMatch(/no epoch limit/);
    expect(operator.events).toEqual([]);
  });

  it.each([
    ['{"rounds":0}', /rounds/],
    ['{"rounds":2.5}', /rounds/],
    ['{"rounds":"12"}', /rounds/],
    ["{}", /rounds/],
    ['{"rounds":3,"extra":1}', /extra/],
    ["[3]", /rounds/],
  ])("answers 400 naming the problem to the target body %s", async (body, problem) => {
    const answer = await call("/api/admin/target", { body });
    expect(answer.status).toBe(400);
    expect(String(answer.json.error)).toMatch(/^bad body: /);
    expect(String(answer.json.error)).toMatch(problem);
    expect(operator.events).toEqual([]);
  });

  it("answers malformed JSON, a huge body and a missing body with JSON errors", async () => {
    const malformed = await call("/api/admin/target", { body: '{"rounds":' });
    expect(malformed.status).toBe(400);
    expect(malformed.json.error).toMatch(/^bad request: /);
    const huge = await call("/api/admin/stop", { body: JSON.stringify({ reason: "x".repeat(10_000) }) });
    expect(huge.status).toBe(413);
    const missing = await call("/api/admin/target");
    expect(missing.status).toBe(400);
    expect(operator.events).toEqual([]);
  });

  it("answers 409 to pause, resume and target once training has finished", async () => {
    operator.status = "done";
    for (const [path, body] of [["/api/admin/pause"], ["/api/admin/resume"], ["/api/admin/target", '{"rounds":50}']] as const) {
      const answer = await call(path, body === undefined ? {} : { body });
      expect(answer.status).toBe(409);
      expect(answer.json.error).toMatch(/training has finished/);
    }
    expect(operator.events).toEqual([]);
  });

  it("answers 404 in JSON to an unknown admin action (after the token check)", async () => {
    expect((await call("/api/admin/reboot", { token: null })).status).toBe(401);
    const unknown = await call("/api/admin/reboot");
    expect(unknown.status).toBe(404);
    expect(unknown.json.error).toMatch(/no admin action POST \/api\/admin\/reboot/);
  });
});

describe("the CLI's admin token", () => {
  it("exits 2 with the reason on an admin token that is too short", async () => {
    const { spawn } = await import("node:child_process");
    const { resolve } = await import("node:path");
    const child = spawn(process.execPath, ["--import", "tsx", "apps/server/src/main.ts", "--admin-token", "short"], {
      cwd: resolve(import.meta.dirname, "../../.."),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((done) => child.once("exit", done));
    expect(code).toBe(2);
    expect(stderr).toMatch(/--admin-token must be 8 to 256 characters long/);
  });
});
