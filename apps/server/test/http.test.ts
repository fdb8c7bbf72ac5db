import http from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import express from "express";
import { afterEach, describe, expect, it } from "vitest";
import { BODY_IDLE_TIMEOUT_MS, createConcurrencyLimit, readBody, type ConcurrencyLimit, type ReadBodyOptions } from "../src/http/body.ts";
import { asyncRoute, describeError, errorHandler, HttpError, MAX_ECHOED_PATH_CHARS, notFoundHandler } from "../src/http/errors.ts";
import { CONTENT_SECURITY_POLICY, SECURITY_HEADERS, securityHeaders } from "../src/http/headers.ts";
import { MAX_ROUND, parseRoundQuery } from "../src/http/query.ts";

/** How long one request may take on loopback, from connecting to the end of the answer. */
const REQUEST_TIMEOUT_MS = 5_000;
/** How long a condition on the server's state may take to become true. */
const POLL_TIMEOUT_MS = 5_000;
const POLL_INTERVAL_MS = 10;
/** How long a test server may take to close. */
const CLOSE_TIMEOUT_MS = 5_000;
/** The silence after which the test uploads give up (the real default, BODY_IDLE_TIMEOUT_MS, is 30 s). */
const TEST_IDLE_TIMEOUT_MS = 200;
/** Upload limit of the test app. */
const UPLOAD_LIMIT = 64 * 1024;
/** Chunks an oversized chunked upload may send before the test gives up waiting for the 413. */
const MAX_CHUNKS = 1_000;

const servers: http.Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map(closeServer));
});

function closeServer(server: http.Server): Promise<void> {
  return withTimeout(
    new Promise<void>((done, fail) => {
      server.close((error) => (error === undefined ? done() : fail(error)));
      server.closeAllConnections();
    }),
    CLOSE_TIMEOUT_MS,
    "server close",
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_done, fail) => {
    timer = setTimeout(() => fail(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + POLL_TIMEOUT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not true within ${POLL_TIMEOUT_MS} ms`);
    await new Promise((done) => setTimeout(done, POLL_INTERVAL_MS));
  }
}

async function listen(app: express.Express): Promise<string> {
  const server = http.createServer(app);
  servers.push(server);
  await withTimeout(new Promise<void>((done) => server.listen(0, "127.0.0.1", done)), REQUEST_TIMEOUT_MS, "listen");
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

type TestApp = { url: string; uploads: ConcurrencyLimit; log: string[] };

/** The handlers as the server mounts them, on a tiny app: headers first, 404 and errors last. */
async function startApp(options: { maxUploads?: number; withErrorHandler?: boolean } = {}): Promise<TestApp> {
  const uploads = createConcurrencyLimit(options.maxUploads ?? 2);
  const log: string[] = [];
  const bodyOptions: ReadBodyOptions = { limit: UPLOAD_LIMIT, type: "application/octet-stream", idleTimeoutMs: TEST_IDLE_TIMEOUT_MS };
  const app = express();
  app.use(securityHeaders());
  app.get("/ok", (_req, res) => {
    res.json({ ok: true });
  });
  app.get("/state", (req, res) => {
    res.json({ round: parseRoundQuery(req.query.round) ?? "latest" });
  });
  app.post("/raw", express.raw({ type: "application/octet-stream", limit: 16 }), (req, res) => {
    res.json({ bytes: (req.body as Buffer).length });
  });
  app.put(
    "/upload",
    asyncRoute(async (req, res) => {
      const release = uploads.tryAcquire();
      if (release === undefined) throw new HttpError(503, "too many uploads at once; retry", { "Retry-After": "1" });
      try {
        const body = await readBody(req, bodyOptions);
        res.json({ bytes: body.length });
      } finally {
        release();
      }
    }),
  );
  app.get("/boom", () => {
    throw new Error("secret detail\n    at handler (/work/main/apps/server/src/secret.ts:1:1)");
  });
  app.use(notFoundHandler());
  if (options.withErrorHandler !== false) app.use(errorHandler({ onLog: (text) => log.push(text) }));
  return { url: await listen(app), uploads, log };
}

type RawResponse = { status: number; headers: http.IncomingHttpHeaders; body: string };

/**
 * A request whose body the test writes by hand (node:http, not fetch): to send headers with no body
 * yet, stall, or keep sending. Errors after the answer arrived (the server closed a connection we
 * were still writing to) are kept in `lateErrors`, not thrown: that close is the behaviour under test.
 */
function rawRequest(url: string, method: string, path: string, headers: Record<string, string | number>) {
  const request = http.request(`${url}${path}`, { method, headers });
  const lateErrors: Error[] = [];
  let answered = false;
  const response = withTimeout(
    new Promise<RawResponse>((done, fail) => {
      request.on("error", (error) => {
        if (answered) lateErrors.push(error);
        else fail(error);
      });
      request.on("response", (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => done({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on("error", fail);
      });
    }),
    REQUEST_TIMEOUT_MS,
    `${method} ${path}`,
  );
  return { request, response, lateErrors, isAnswered: () => answered };
}

/** Resolves when `chunk` is written (or the write failed: the caller looks at the answer instead). */
function write(request: http.ClientRequest, chunk: Buffer): Promise<void> {
  return withTimeout(
    new Promise<void>((done) => {
      request.write(chunk, () => done());
    }),
    REQUEST_TIMEOUT_MS,
    "body write",
  );
}

function json(body: string): unknown {
  return JSON.parse(body) as unknown;
}

/** What must never reach a client: stack frames and our file paths. */
function expectNoInternals(body: string): void {
  expect(body).not.toMatch(/^\s*at /m);
  expect(body).not.toMatch(/:\d+:\d+\)?$/m);
  expect(body).not.toContain("/work");
  expect(body).not.toContain(process.cwd());
  expect(body).not.toContain("node_modules");
}

describe("JSON errors", () => {
  it("answers an unknown route with a JSON 404 naming method and path, not the query", async () => {
    const { url } = await startApp();
    const response = await fetch(`${url}/nope?token=secret`, { method: "DELETE", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(response.status).toBe(404);
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await response.json()).toEqual({ error: "no route for DELETE /nope" });
    // No body was left unread, so the connection stays open for the next request.
    expect(response.headers.get("connection")).toBe("keep-alive");

    const long = `/${"a".repeat(5_000)}`;
    const cut = await fetch(`${url}${long}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(cut.status).toBe(404);
    expect(await cut.json()).toEqual({ error: `no route for GET ${long.slice(0, MAX_ECHOED_PATH_CHARS)}...` });
  });

  it("Express's own 413 page is HTML with a stack trace (what errorHandler replaces)", async () => {
    const { url } = await startApp({ withErrorHandler: false });
    const response = await fetch(`${url}/raw`, { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: Buffer.alloc(1_000), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(response.status).toBe(413);
    expect(response.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await response.text()).toMatch(/at .*node_modules/);
  });

  it("answers an oversized express.raw body with JSON 413 and no stack or paths", async () => {
    const { url, log } = await startApp();
    const response = await fetch(`${url}/raw`, { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: Buffer.alloc(1_000), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(response.status).toBe(413);
    expect(response.headers.get("content-type")).toBe("application/json; charset=utf-8");
    const body = await response.text();
    expect(json(body)).toEqual({ error: "request body is larger than the limit of 16 bytes" });
    expectNoInternals(body);
    expect(log).toEqual([]);
  });

  it("answers an unexpected error with a bare 500 and logs it in one line", async () => {
    const { url, log } = await startApp();
    const response = await fetch(`${url}/boom?x=1`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(response.status).toBe(500);
    const body = await response.text();
    expect(json(body)).toEqual({ error: "internal error" });
    expectNoInternals(body);
    expect(body).not.toContain("secret");
    expect(log).toHaveLength(1);
    expect(log[0]).toMatch(/^GET \/boom failed: Error: secret detail/);
    expect(log[0]).not.toContain("\n");
  });

  const cases: [string, unknown, number, string][] = [
    ["HttpError", new HttpError(409, "state of round 3 is already stored"), 409, "state of round 3 is already stored"],
    ["body-parser too large", Object.assign(new Error("request entity too large"), { status: 413, statusCode: 413, type: "entity.too.large", limit: 5 }), 413, "request body is larger than the limit of 5 bytes"],
    ["body-parser gzip", Object.assign(new Error('unsupported content encoding "gzip"'), { statusCode: 415, type: "encoding.unsupported", encoding: "gzip" }), 415, "compressed bodies are not accepted"],
    ["body-parser charset", Object.assign(new Error("x"), { status: 415, type: "encoding.unsupported", charset: "utf-7" }), 415, "unsupported charset"],
    ["body-parser JSON", Object.assign(new Error("Unexpected token"), { status: 400, type: "entity.parse.failed", body: "{" }), 400, "request body is not valid JSON"],
    ["body-parser aborted", Object.assign(new Error("request aborted"), { status: 400, type: "request.aborted" }), 400, "request aborted before its body was complete"],
    ["static file error, message with a path", Object.assign(new Error("ENOENT: no such file or directory, stat '/work/main/dist/x'"), { status: 404 }), 404, "not found"],
    ["a 5xx status from a library", Object.assign(new Error("stream.not.readable"), { status: 500, type: "stream.not.readable" }), 500, "internal error"],
    ["status out of range", Object.assign(new Error("odd"), { status: 200 }), 500, "internal error"],
    ["plain Error", new Error("/work/main secret"), 500, "internal error"],
    ["a thrown string", "oops", 500, "internal error"],
    ["null", null, 500, "internal error"],
  ];
  it.each(cases)("describeError: %s", (_name, error, status, message) => {
    expect(describeError(error)).toMatchObject({ status, message });
  });

  it("HttpError keeps its headers and refuses a status that is not an error", () => {
    expect(describeError(new HttpError(503, "busy", { "Retry-After": "1" })).headers).toEqual({ "Retry-After": "1" });
    expect(() => new HttpError(200, "fine")).toThrow(RangeError);
  });
});

describe("security headers", () => {
  it("are on a 200, a 404 and an error answer", async () => {
    const { url } = await startApp();
    const answers = await Promise.all(
      [`${url}/ok`, `${url}/missing`, `${url}/state?round=x`].map((target) => fetch(target, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })),
    );
    expect(answers.map((r) => r.status)).toEqual([200, 404, 400]);
    for (const response of answers) {
      for (const [name, value] of Object.entries(SECURITY_HEADERS)) expect(response.headers.get(name), name).toBe(value);
    }
  });

  it("the CSP keeps scripts to our own files and wasm, and forbids framing and plugins", () => {
    const directives = new Map(CONTENT_SECURITY_POLICY.split("; ").map((d) => [d.split(" ")[0], d.split(" ").slice(1).join(" ")]));
    expect(directives.get("default-src")).toBe("'self'");
    expect(directives.get("script-src")).toBe("'self' 'wasm-unsafe-eval'");
    expect(directives.get("connect-src")).toBe("'self'");
    expect(directives.get("object-src")).toBe("'none'");
    expect(directives.get("frame-ancestors")).toBe("'none'");
    expect(CONTENT_SECURITY_POLICY).not.toMatch(/'unsafe-eval'|\*/);
  });
});

describe("readBody", () => {
  it("reads a body within the limit, declared or chunked", async () => {
    const { url } = await startApp();
    const declared = await fetch(`${url}/upload`, { method: "PUT", headers: { "Content-Type": "application/octet-stream" }, body: Buffer.alloc(UPLOAD_LIMIT), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(await declared.json()).toEqual({ bytes: UPLOAD_LIMIT });

    const chunked = rawRequest(url, "PUT", "/upload", { "Content-Type": "application/octet-stream; charset=binary" });
    for (let i = 0; i < 4; i++) await write(chunked.request, Buffer.alloc(1_000));
    chunked.request.end();
    const answer = await chunked.response;
    expect(answer.status).toBe(200);
    expect(json(answer.body)).toEqual({ bytes: 4_000 });
  });

  it("refuses a gzip body with 415 without inflating it", async () => {
    const { url } = await startApp();
    const response = await fetch(`${url}/upload`, {
      method: "PUT",
      headers: { "Content-Type": "application/octet-stream", "Content-Encoding": "gzip" },
      body: gzipSync(Buffer.alloc(1_000)),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    expect(response.status).toBe(415);
    expect(await response.json()).toEqual({ error: 'compressed bodies are not accepted (Content-Encoding "gzip")' });
  });

  it("refuses another content type with 415", async () => {
    const { url } = await startApp();
    const response = await fetch(`${url}/upload`, { method: "PUT", headers: { "Content-Type": "application/json" }, body: "{}", signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(response.status).toBe(415);
    expect(await response.json()).toEqual({ error: 'expected Content-Type application/octet-stream, got "application/json"' });
  });

  it("refuses a declared Content-Length over the limit with 413 before any body byte is sent", async () => {
    const { url, uploads } = await startApp();
    const upload = rawRequest(url, "PUT", "/upload", { "Content-Type": "application/octet-stream", "Content-Length": 10_000_000 });
    upload.request.flushHeaders();
    // Not a byte of the body is written: the answer comes from the headers alone.
    const answer = await upload.response;
    expect(answer.status).toBe(413);
    expect(json(answer.body)).toEqual({ error: `request body of 10000000 bytes is larger than the limit of ${UPLOAD_LIMIT} bytes` });
    expect(answer.headers.connection).toBe("close");
    expect(uploads.active).toBe(0);
    upload.request.destroy();
  });

  it("cuts a chunked body that passes the limit with 413, and closes the connection", async () => {
    const { url, uploads } = await startApp();
    const upload = rawRequest(url, "PUT", "/upload", { "Content-Type": "application/octet-stream" });
    const chunk = Buffer.alloc(16 * 1024);
    let sent = 0;
    for (let i = 0; i < MAX_CHUNKS && !upload.isAnswered() && !upload.request.destroyed; i++) {
      await write(upload.request, chunk);
      sent += chunk.length;
    }
    const answer = await upload.response;
    expect(answer.status).toBe(413);
    expect(json(answer.body)).toEqual({ error: `request body is larger than the limit of ${UPLOAD_LIMIT} bytes` });
    expect(answer.headers.connection).toBe("close");
    expectNoInternals(answer.body);
    expect(sent).toBeGreaterThan(UPLOAD_LIMIT);
    // The server stopped the upload long before the sender would have: it was not read to the end.
    expect(sent).toBeLessThan(MAX_CHUNKS * chunk.length);
    await until(() => uploads.active === 0, "upload slot released");
    upload.request.destroy();
  });

  it("gives up on a body that stalls with 408", async () => {
    const { url, uploads } = await startApp();
    const upload = rawRequest(url, "PUT", "/upload", { "Content-Type": "application/octet-stream", "Content-Length": 100 });
    await write(upload.request, Buffer.alloc(10));
    const started = Date.now();
    const answer = await upload.response;
    expect(answer.status).toBe(408);
    expect(json(answer.body)).toEqual({ error: `request body sent nothing for ${TEST_IDLE_TIMEOUT_MS} ms` });
    expect(Date.now() - started).toBeGreaterThanOrEqual(TEST_IDLE_TIMEOUT_MS - 50);
    expect(uploads.active).toBe(0);
    expect(BODY_IDLE_TIMEOUT_MS).toBe(30_000);
    upload.request.destroy();
  });

  it("releases the upload slot when the client goes away mid-body", async () => {
    const { url, uploads } = await startApp();
    const upload = rawRequest(url, "PUT", "/upload", { "Content-Type": "application/octet-stream", "Content-Length": 1_000 });
    upload.response.catch((error: unknown) => {
      // The test aborts this request itself; its failure is expected.
      expect(String(error)).toMatch(/socket hang up|ECONNRESET|aborted/);
    });
    await write(upload.request, Buffer.alloc(10));
    await until(() => uploads.active === 1, "upload started");
    upload.request.destroy();
    await until(() => uploads.active === 0, "upload slot released after the client left");
  });

  it("refuses a request stream that was already read, as a server bug", async () => {
    const { Readable } = await import("node:stream");
    const done = Object.assign(Readable.from([]), { headers: { "content-type": "application/octet-stream" } });
    done.resume();
    await withTimeout(new Promise((resolve) => done.once("end", resolve)), REQUEST_TIMEOUT_MS, "stream end");
    await expect(readBody(done as unknown as http.IncomingMessage, { limit: 10, type: "application/octet-stream" })).rejects.toThrow(/already read/);
    await expect(readBody(done as unknown as http.IncomingMessage, { limit: -1, type: "application/octet-stream" })).rejects.toThrow(RangeError);
  });
});

describe("upload concurrency limit", () => {
  it("answers 503 with Retry-After to the upload past the limit, and serves the others", async () => {
    const { url, uploads, log } = await startApp({ maxUploads: 2 });
    const stalled = [0, 1].map(() => rawRequest(url, "PUT", "/upload", { "Content-Type": "application/octet-stream", "Content-Length": 20 }));
    for (const upload of stalled) await write(upload.request, Buffer.alloc(10));
    await until(() => uploads.active === 2, "two uploads in progress");

    const third = await fetch(`${url}/upload`, { method: "PUT", headers: { "Content-Type": "application/octet-stream" }, body: Buffer.alloc(20), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    expect(third.status).toBe(503);
    expect(third.headers.get("retry-after")).toBe("1");
    expect(await third.json()).toEqual({ error: "too many uploads at once; retry" });

    for (const upload of stalled) upload.request.end(Buffer.alloc(10));
    const answers = await Promise.all(stalled.map((upload) => upload.response));
    expect(answers.map((a) => [a.status, json(a.body)])).toEqual([
      [200, { bytes: 20 }],
      [200, { bytes: 20 }],
    ]);
    expect(uploads.active).toBe(0);
    // A 503 on purpose is not an incident: nothing is logged.
    expect(log).toEqual([]);
  });

  it("counts slots, releases each once, and needs a positive limit", () => {
    const limit = createConcurrencyLimit(2);
    const a = limit.tryAcquire();
    const b = limit.tryAcquire();
    expect([a, b].every((r) => typeof r === "function")).toBe(true);
    expect(limit.tryAcquire()).toBeUndefined();
    expect(limit.active).toBe(2);
    a?.();
    a?.();
    expect(limit.active).toBe(1);
    expect(limit.tryAcquire()).toBeTypeOf("function");
    expect(limit.active).toBe(2);
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => createConcurrencyLimit(bad)).toThrow(RangeError);
  });
});

describe("parseRoundQuery", () => {
  const accepted: [unknown, number | undefined][] = [
    [undefined, undefined],
    ["0", 0],
    ["7", 7],
    ["007", 7],
    ["123456", 123_456],
    [String(MAX_ROUND), MAX_ROUND],
  ];
  it.each(accepted)("accepts %j as %j", (value, round) => {
    expect(parseRoundQuery(value)).toBe(round);
  });

  const refused: [unknown, string][] = [
    ["", "an empty value"],
    [["0"], "a list of 1 values"],
    [["1", "2"], "a list of 2 values"],
    [{ a: "0" }, "an object"],
    ["0x0", '"0x0"'],
    ["1e3", '"1e3"'],
    [" 1", '" 1"'],
    ["1 ", '"1 "'],
    ["+1", '"+1"'],
    ["-1", '"-1"'],
    ["1.0", '"1.0"'],
    ["Infinity", '"Infinity"'],
    [String(MAX_ROUND + 1), `"${MAX_ROUND + 1}"`],
    ["12345678901", '"12345678901"'],
    ["9".repeat(400), `"${"9".repeat(40)}..."`],
    [0, "number"],
    [null, "object"],
  ];
  it.each(refused)("refuses %j with a 400 naming it", (value, shown) => {
    let error: unknown;
    try {
      parseRoundQuery(value);
    } catch (thrown) {
      error = thrown;
    }
    expect(error).toBeInstanceOf(HttpError);
    expect((error as HttpError).status).toBe(400);
    expect((error as HttpError).message).toContain(`got ${shown}`);
  });

  it("is a JSON 400 through Express's query parser", async () => {
    const { url } = await startApp();
    const get = async (query: string): Promise<[number, unknown]> => {
      const response = await fetch(`${url}/state${query}`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
      return [response.status, await response.json()];
    };
    expect(await get("")).toEqual([200, { round: "latest" }]);
    expect(await get("?round=12")).toEqual([200, { round: 12 }]);
    for (const query of ["?round=", "?round", "?round[]=0", "?round=0x0", "?round=1&round=2", "?round=%201"]) {
      const [status, body] = await get(query);
      expect([query, status]).toEqual([query, 400]);
      expect(body).toEqual({ error: expect.stringMatching(/^round must be decimal digits from 0 to 4294967295, got /) });
    }
  });
});
