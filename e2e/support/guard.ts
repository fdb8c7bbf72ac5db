// Nothing leaves the machine in tests (DESIGN.md §3): every request a page makes to anything but the
// test server is aborted and recorded here, and the test fails at teardown if one happened.
import type { BrowserContext } from "@playwright/test";

export interface BlockedRequest {
  url: string;
  kind: "http" | "websocket";
  /** Which worker (openWorkers index) made it. */
  worker: number;
}

export class RequestGuard {
  private readonly blocked: BlockedRequest[] = [];
  private readonly allowedHosts = new Set<string>();

  /** `serverUrl`: the only origin (http and ws) pages may reach, until allow() adds another test server. */
  constructor(serverUrl: string) {
    this.allowedHosts.add(new URL(serverUrl).host);
  }

  /** Lets pages reach another server the test started (on this machine, its own port). */
  allow(serverUrl: string): void {
    this.allowedHosts.add(new URL(serverUrl).host);
  }

  /** The test servers' own hosts and ports, over http(s) or ws(s); nothing else. */
  allows(url: URL): boolean {
    return ["http:", "https:", "ws:", "wss:"].includes(url.protocol) && this.allowedHosts.has(url.host);
  }

  /** Routes every request of `context` through the guard. Call before the context opens a page. */
  async install(context: BrowserContext, worker: number): Promise<void> {
    await context.route(
      (url) => !this.allows(url),
      (route) => {
        this.blocked.push({ url: route.request().url(), kind: "http", worker });
        return route.abort("blockedbyclient");
      },
    );
    await context.routeWebSocket(
      (url) => !this.allows(url),
      (ws) => {
        this.blocked.push({ url: ws.url(), kind: "websocket", worker });
        return ws.close({ code: 1008, reason: "blocked by the e2e request guard" });
      },
    );
  }

  /** What was blocked so far (a copy). */
  list(): BlockedRequest[] {
    return [...this.blocked];
  }

  /** Returns and forgets what was blocked: for tests that provoke a blocked request on purpose. */
  take(): BlockedRequest[] {
    return this.blocked.splice(0);
  }

  /** Throws, naming every blocked URL, if anything was blocked. */
  assertNothingBlocked(): void {
    if (this.blocked.length === 0) return;
    const lines = this.blocked.map((b) => `  worker ${b.worker}: ${b.kind} ${b.url}`);
    throw new Error(`pages tried to reach something other than the test server:\n${lines.join("\n")}`);
  }
}
