import type { Page } from "@playwright/test";
import { expect, test } from "../fixtures.ts";

/** Tries a foreign fetch and a foreign WebSocket from the page, then its own server's health. */
function probe(page: Page): Promise<{ http: string; websocket: string; own: number }> {
  return page.evaluate(async () => {
    const http = await fetch("http://example.invalid/").then(
      (response) => `loaded ${response.status}`,
      (error: unknown) => `failed: ${String(error)}`,
    );
    const websocket = await new Promise<string>((resolve) => {
      try {
        const ws = new WebSocket("ws://example.invalid/socket");
        ws.onopen = () => resolve("opened");
        ws.onclose = (event) => resolve(`closed ${event.code}`);
      } catch (error) {
        resolve(`refused: ${String(error)}`);
      }
    });
    const own = (await fetch("/api/health")).status;
    return { http, websocket, own };
  });
}

test("the pages' Content-Security-Policy stops a foreign fetch before it reaches the network", async ({ openWorkers, guard }) => {
  const [page] = await openWorkers(1, "/lab.html");
  const outcome = await page!.evaluate(() =>
    fetch("http://example.invalid/").then(
      (response) => `loaded ${response.status}`,
      (error: unknown) => `failed: ${String(error)}`,
    ),
  );
  expect(outcome).toMatch(/^failed: TypeError/);
  // Blocked by the browser itself (connect-src 'self'), so the harness's guard never saw it. (Not
  // shown for WebSockets: Playwright's WebSocket routing replaces the page's WebSocket in script,
  // ahead of the CSP check.)
  expect(guard.list()).toEqual([]);
});

test("requests to anything but the test server are blocked and recorded", async ({ browser, server, guard }) => {
  // The guard is the harness's own net under the CSP: test it on a context that ignores the CSP.
  const context = await browser.newContext({ bypassCSP: true });
  try {
    await guard.install(context, 0);
    const page = await context.newPage();
    await page.goto(new URL("/lab.html", server.url).href);
    const outcomes = await probe(page);
    expect(outcomes.http).toMatch(/^failed: TypeError/);
    expect(outcomes.websocket).not.toBe("opened");
    expect(outcomes.own).toBe(200);
    await expect
      .poll(() => guard.list().map((b) => `${b.kind} ${b.url}`))
      .toEqual(["http http://example.invalid/", "websocket ws://example.invalid/socket"]);
    expect(() => guard.assertNothingBlocked()).toThrow(/worker 0: http http:\/\/example\.invalid\//);

    // Acknowledge the blocks this test provoked, so the guard's own teardown check passes.
    expect(guard.take()).toHaveLength(2);
    expect(() => guard.assertNothingBlocked()).not.toThrow();
  } finally {
    await context.close();
  }
});

test("the server serves the shared static assets of public/ (icon, robots.txt) and both pages link the icon", async ({ openWorkers, server }) => {
  const robots = await fetch(`${server.url}/robots.txt`);
  expect(robots.status).toBe(200);
  expect(await robots.text()).toMatch(/^Disallow: \/$/m);
  const icon = await fetch(`${server.url}/favicon.svg`);
  expect(icon.headers.get("content-type")).toMatch(/^image\/svg\+xml/);
  const [worker, dashboard] = await openWorkers(2, "/");
  await dashboard!.goto(new URL("/dashboard", server.url).href);
  for (const page of [worker!, dashboard!]) await expect(page.locator('link[rel="icon"]')).toHaveAttribute("href", "/favicon.svg");
});

test("a volunteer's ?memoryMiB=: a bad value is refused on the page; too little for the job is refused at join with both figures", async ({ openWorkers }) => {
  const [typo, small] = await openWorkers(2, "/?backends=cpu&memoryMiB=2GB");
  await typo!.click("#start");
  await expect(typo!.locator("#error")).toHaveText("?memoryMiB=2GB is not a whole number of MiB from 1 to 1048576");
  await expect(typo!.locator("#start")).toBeEnabled();
  // The default job's MLP needs a few MiB in one tab: 1 is not enough, and the server says so.
  await small!.goto(new URL("/?backends=cpu&memoryMiB=1", small!.url()).href);
  await small!.click("#start");
  await expect(small!.locator("#phase")).toContainText(/this tab lends 1 MiB \(\?memoryMiB=\), but the job's model needs \d+ MiB in one tab/, { timeout: 20_000 });
});
