import { afterEach, describe, expect, it, vi } from "vitest";
import { uploadState } from "../src/session/state-http.ts";

const AUTH = { peerId: "w-1", sessionToken: "t" };

/** A fetch that answers each call with the next of `statuses` and records the calls. */
function stubFetch(statuses: number[], retryAfter = "0.01"): { calls: number } {
  const seen = { calls: 0 };
  vi.stubGlobal("fetch", async () => {
    const status = statuses[Math.min(seen.calls++, statuses.length - 1)] as number;
    return new Response(status === 200 ? null : `status ${status}`, { status, headers: status === 503 ? { "retry-after": retryAfter } : {} });
  });
  return seen;
}

describe("state upload", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("tries again after a 503 with Retry-After, and succeeds", async () => {
    const seen = stubFetch([503, 503, 200]);
    await uploadState("http://server", 3, new ArrayBuffer(8), AUTH);
    expect(seen.calls).toBe(3);
  });

  it("gives up after a bounded number of 503s, naming the last answer", async () => {
    const seen = stubFetch([503]);
    await expect(uploadState("http://server", 3, new ArrayBuffer(8), AUTH)).rejects.toThrow(/503 status 503/);
    expect(seen.calls).toBe(5);
  });

  it("does not retry a refusal", async () => {
    const seen = stubFetch([403]);
    await expect(uploadState("http://server", 3, new ArrayBuffer(8), AUTH)).rejects.toThrow(/PUT \/api\/state\/3: 403/);
    expect(seen.calls).toBe(1);
  });
});
