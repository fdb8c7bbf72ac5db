import { expect, test } from "../fixtures.ts";

test("requests to anything but the test server are blocked and recorded", async ({ openWorkers, guard }) => {
  const [page] = await openWorkers(1, "/lab.html");

  const outcomes = await page!.evaluate(async () => {
    const http = await fetch("http://example.invalid/").then(
      (response) => `loaded ${response.status}`,
      (error: unknown) => `failed: ${String(error)}`,
    );
    const websocket = await new Promise<string>((resolve) => {
      const ws = new WebSocket("ws://example.invalid/socket");
      ws.onopen = () => resolve("opened");
      ws.onclose = (event) => resolve(`closed ${event.code}`);
    });
    const own = (await fetch("/api/health")).status;
    return { http, websocket, own };
  });

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
});
