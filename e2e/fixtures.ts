// Fixtures every e2e test uses: the server (one per Playwright worker), the request guard, and
// openWorkers(n), which opens n pages in n separate browser contexts and closes them all afterwards.
import { test as base, expect, type BrowserContext, type Page } from "@playwright/test";
// Brings the `window.crowdtrainLab` declaration into the e2e program (types only, nothing bundled).
import type { CrowdtrainLab } from "../apps/worker/src/lab-api.ts";
import { RequestGuard } from "./support/guard.ts";
import { startServerProcess, type ServerProcess } from "./support/server-process.ts";
import { describeWorkers } from "./support/worker-status.ts";

export { expect };
export type { CrowdtrainLab, ServerProcess };

/**
 * Loopback even inside the network namespace: WebGPU needs a secure context (https or localhost),
 * and Chromium gathers WebRTC host candidates from the veth (10.88.0.1) whatever the page's origin.
 */
const SERVER_HOST = process.env.CROWDTRAIN_E2E_HOST ?? "127.0.0.1";
/** Starting the server fixture: the server's own ready timeout plus slack. */
const SERVER_FIXTURE_TIMEOUT_MS = 60_000;

/**
 * Opens `count` pages at `path` of `on` (default: the worker's `server`), each in its own browser
 * context (no shared storage or BroadcastChannel).
 */
export type OpenWorkers = (count: number, path?: string, on?: ServerProcess) => Promise<Page[]>;

/** Starts a server of the test's own with extra CLI flags (a job, --min-workers); killed at teardown. */
export type LaunchServer = (args: string[]) => Promise<ServerProcess>;

interface TestFixtures {
  guard: RequestGuard;
  openWorkers: OpenWorkers;
  launchServer: LaunchServer;
}

interface WorkerFixtures {
  /** Extra server CLI flags; set with test.use({ serverArgs: [...] }) (a new server per distinct value). */
  serverArgs: string[];
  server: ServerProcess;
}

export const test = base.extend<TestFixtures, WorkerFixtures>({
  serverArgs: [[], { scope: "worker", option: true }],
  server: [
    async ({ serverArgs }, use) => {
      const server = await startServerProcess(SERVER_HOST, serverArgs);
      try {
        await use(server);
      } finally {
        await server.dispose();
      }
    },
    { scope: "worker", timeout: SERVER_FIXTURE_TIMEOUT_MS },
  ],

  guard: async ({ server }, use) => {
    const guard = new RequestGuard(server.url);
    await use(guard);
    guard.assertNothingBlocked();
  },

  launchServer: async ({ guard }, use) => {
    const launched: ServerProcess[] = [];
    await use(async (args) => {
      const server = await startServerProcess(SERVER_HOST, args);
      launched.push(server);
      guard.allow(server.url);
      return server;
    });
    await Promise.all(launched.map((server) => server.dispose()));
  },

  openWorkers: async ({ browser, server, guard }, use, testInfo) => {
    const contexts: BrowserContext[] = [];
    const pages: { label: string; page: Page }[] = [];
    const consoleErrors: string[] = [];
    let opened = 0;
    const openOne = async (worker: number, path: string, on: ServerProcess): Promise<Page> => {
      const context = await browser.newContext();
      contexts.push(context);
      await guard.install(context, worker);
      const page = await context.newPage();
      pages.push({ label: `worker ${worker}`, page });
      page.on("console", (message) => {
        if (message.type() === "error") consoleErrors.push(`worker ${worker}: ${message.text()}`);
      });
      page.on("pageerror", (error) => consoleErrors.push(`worker ${worker}: uncaught ${error.stack ?? error.message}`));
      await page.goto(new URL(path, on.url).href);
      return page;
    };
    await use((count, path = "/lab.html", on = server) => Promise.all(Array.from({ length: count }, () => openOne(opened++, path, on))));
    if (testInfo.status !== testInfo.expectedStatus && pages.length > 0) {
      await testInfo.attach("worker-status", { body: await describeWorkers(pages), contentType: "text/plain" });
    }
    await Promise.all(contexts.map((context) => context.close()));
    if (consoleErrors.length > 0) {
      await testInfo.attach("console-errors", { body: consoleErrors.join("\n"), contentType: "text/plain" });
    }
  },
});
