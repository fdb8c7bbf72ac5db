// The live feed and the admin client, with a fake EventSource and a fake fetch (Node has neither).
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { adminRequest } from "../src/admin.ts";
import { REOPEN_AFTER_MS, STALE_AFTER_MS, StatusFeed, type FeedState } from "../src/feed.ts";
import { fakeStatus } from "./fake-status.ts";

class FakeEventSource {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  static opened: FakeEventSource[] = [];
  readyState = FakeEventSource.CONNECTING;
  onmessage: ((event: { data: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeEventSource.opened.push(this);
  }
  close(): void {
    this.readyState = FakeEventSource.CLOSED;
  }
  message(data: unknown): void {
    this.readyState = FakeEventSource.OPEN;
    this.onmessage?.({ data: typeof data === "string" ? data : JSON.stringify(data) });
  }
  fail(readyState: number): void {
    this.readyState = readyState;
    this.onerror?.();
  }
}

describe("StatusFeed", () => {
  let states: FeedState[];
  let feed: StatusFeed;
  const last = () => states.at(-1) as FeedState;
  const source = () => FakeEventSource.opened.at(-1) as FakeEventSource;

  beforeEach(() => {
    vi.useFakeTimers();
    vi.stubGlobal("EventSource", FakeEventSource);
    FakeEventSource.opened = [];
    states = [];
    feed = new StatusFeed("/api/events", (state) => states.push(state));
  });

  afterEach(() => {
    feed.close();
    vi.useRealTimers();
    vi.unstubAllGlobals();
  });

  it("parses each snapshot with the protocol's schema, and reports one it cannot read", () => {
    expect(source().url).toBe("/api/events");
    source().message(fakeStatus(2));
    expect(last()).toMatchObject({ connection: "live", problem: undefined });
    expect(last().status?.peers).toHaveLength(3);
    source().message({ nonsense: true });
    expect(last().problem).toMatch(/bad status/);
    expect(last().status?.peers).toHaveLength(3);
  });

  it("shows reconnecting while the browser retries, and live again on the next snapshot", () => {
    source().message(fakeStatus(1));
    source().fail(FakeEventSource.CONNECTING);
    expect(last().connection).toBe("reconnecting");
    expect(last().status).toBeDefined();
    expect(FakeEventSource.opened).toHaveLength(1);
    source().message(fakeStatus(1));
    expect(last().connection).toBe("live");
  });

  it("opens a new EventSource when the browser gave up on the old one", () => {
    source().message(fakeStatus(1));
    source().fail(FakeEventSource.CLOSED);
    vi.advanceTimersByTime(REOPEN_AFTER_MS + 10);
    expect(FakeEventSource.opened).toHaveLength(2);
  });

  it("reopens a connection that went silent", () => {
    source().message(fakeStatus(1));
    vi.advanceTimersByTime(STALE_AFTER_MS + 1_100);
    expect(FakeEventSource.opened).toHaveLength(2);
    expect(FakeEventSource.opened[0]?.readyState).toBe(FakeEventSource.CLOSED);
    expect(last().connection).toBe("reconnecting");
  });

  it("stops everything on close", () => {
    feed.close();
    vi.advanceTimersByTime(60_000);
    expect(FakeEventSource.opened).toHaveLength(1);
    expect(source().readyState).toBe(FakeEventSource.CLOSED);
  });
});

describe("adminRequest", () => {
  const answer = (status: number, body: unknown) => Promise.resolve(new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } }));

  it("sends the token as a bearer header and a JSON body", async () => {
    const fetcher = vi.fn((_url: string | URL | Request, _init?: RequestInit) => answer(200, { ok: true, status: "running", round: 3, targetRounds: 12 }));
    const result = await adminRequest("tok-en-123", { kind: "target", body: { rounds: 12 } }, fetcher as typeof fetch);
    expect(result).toEqual({ ok: true, answer: { ok: true, status: "running", round: 3, targetRounds: 12 } });
    const [url, init] = fetcher.mock.calls[0] as [string, RequestInit];
    expect(url).toBe("/api/admin/target");
    expect(init.method).toBe("POST");
    expect(init.headers).toMatchObject({ authorization: "Bearer tok-en-123", "content-type": "application/json" });
    expect(init.body).toBe('{"rounds":12}');
  });

  it("returns the server's refusal, or the network failure, as a value", async () => {
    expect(await adminRequest("x", { kind: "pause" }, (() => answer(401, { error: "wrong admin token" })) as typeof fetch)).toEqual({
      ok: false,
      httpStatus: 401,
      error: "wrong admin token",
    });
    const down = await adminRequest("x", { kind: "check" }, (() => Promise.reject(new TypeError("fetch failed"))) as typeof fetch);
    expect(down).toMatchObject({ ok: false, httpStatus: undefined, error: expect.stringMatching(/did not answer: fetch failed/) });
  });
});
