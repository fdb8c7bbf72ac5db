import type { Page } from "@playwright/test";
import { expect, test } from "../fixtures.ts";
import { fakeStatus } from "../../apps/dashboard/test/fake-status.ts";
import { quadsOverlap, type Quad } from "../../apps/dashboard/src/logic/ring-layout.ts";
import { fetchStatus, type Status } from "../support/status.ts";

const TOKEN = "test-token";
/** A volunteer's display name that would be markup if the page ever used it as HTML. */
const EVIL_NAME = "<b>bold</b><img src=x onerror=alert(1)>";
/** Three tabs (one on SwiftShader WebGPU) training a small MLP for a few rounds, on two shared cores. */
const TRAIN_TIMEOUT_MS = 4 * 60_000;
const POLL = { intervals: [500, 1_000, 2_000] };

const apiRing = (status: Status): string[] => (status.ring.length > 0 ? status.ring : (status.lastRing?.ring ?? []));

/** What the page shows as the loss curve's first and last points, and how many rounds it covers. */
async function lossOnPage(page: Page): Promise<{ first: number; last: number; lastRound: number } | undefined> {
  return page.evaluate(() => {
    const first = document.querySelector("[data-testid=loss-first]");
    const last = document.querySelector("[data-testid=loss-last]");
    if (first === null || last === null) return undefined;
    return { first: Number(first.textContent), last: Number(last.textContent), lastRound: Number(last.getAttribute("data-round")) };
  });
}

async function postAdmin(url: string, action: string, token?: string): Promise<{ status: number; error: unknown }> {
  const response = await fetch(`${url}/api/admin/${action}`, {
    method: "POST",
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  return { status: response.status, error: ((await response.json()) as { error?: unknown }).error };
}

// One server for the file (a worker-scoped option cannot change inside it); the 64-peer check only needs its pages.
test.use({ serverArgs: ["--min-workers", "3", "--job", "e2e/jobs/dashboard.json", "--admin-token", TOKEN] });

test.describe("the dashboard with three workers", () => {
  test("shows peers, ring order and a falling loss live; is read-only without the token; shows HTML names as text", async ({ openWorkers, server }, testInfo) => {
    test.setTimeout(TRAIN_TIMEOUT_MS + 2 * 60_000);
    const [dashboard] = await openWorkers(1, "/dashboard");
    if (dashboard === undefined) throw new Error("no dashboard page");
    await dashboard.setViewportSize({ width: 1440, height: 1000 });
    let dialogs = 0;
    dashboard.on("dialog", (dialog) => {
      dialogs++;
      void dialog.dismiss();
    });
    // Survives only if the page is never reloaded (the reconnect check at the end).
    await dashboard.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));

    // Before any worker: live, and says where volunteers go.
    await expect(dashboard.getByTestId("connection")).toHaveText("live");
    await expect(dashboard.getByTestId("join-hint")).toContainText(`${server.url}/`);

    // Without the token: the server refuses, the page says read-only and its controls are disabled.
    expect(await postAdmin(server.url, "pause")).toEqual({ status: 401, error: expect.stringMatching(/admin token required/) });
    expect(await postAdmin(server.url, "pause", "wrong-token")).toEqual({ status: 401, error: "wrong admin token" });
    await expect(dashboard.getByTestId("mode")).toHaveText("read-only");
    for (const name of ["Pause", "Stop…", "Set target"]) await expect(dashboard.getByRole("button", { name })).toBeDisabled();
    await expect(dashboard.getByLabel("Target rounds")).toBeDisabled();

    const workers = [
      ...(await openWorkers(1, `/?backends=webgpu&name=${encodeURIComponent(EVIL_NAME)}`)),
      ...(await openWorkers(1, "/?backends=cpu&name=ada")),
      ...(await openWorkers(1, "/?backends=cpu&name=grace")),
    ];
    for (const worker of workers) await worker.click("#start");

    // The peers, with the hostile name as literal text and no element made from it.
    await expect
      .poll(async () => (await dashboard.getByTestId("peer-name").allTextContents()).sort(), { timeout: 60_000, ...POLL })
      .toEqual([EVIL_NAME, "ada", "grace"].sort());
    await expect(dashboard.getByTestId("join-hint")).toHaveCount(0);
    const evilRow = dashboard.locator("tr", { has: dashboard.getByText(EVIL_NAME, { exact: true }) });
    await expect(evilRow.getByTestId("peer-backend")).toHaveText("webgpu");
    await expect(dashboard.locator("main b, main img")).toHaveCount(0);

    // The ring as drawn, in the order /api/status gives.
    await expect
      .poll(
        async () => {
          const onPage = await dashboard.getByTestId("ring-order").locator("li").evaluateAll((items) => items.map((li) => li.getAttribute("data-peer-id")));
          const drawn = await dashboard.locator("[data-testid=ring-graph] [data-ring-index]").evaluateAll((nodes) => nodes.map((g) => g.getAttribute("data-peer-id")));
          const ring = apiRing(await fetchStatus(server.url));
          return ring.length === 3 && JSON.stringify(onPage) === JSON.stringify(ring) && JSON.stringify(drawn) === JSON.stringify(ring);
        },
        { timeout: TRAIN_TIMEOUT_MS, ...POLL, message: "the page's ring order matches /api/status" },
      )
      .toBe(true);
    await expect(dashboard.locator("[data-testid=ring-graph] text", { hasText: "<b>bold" })).toHaveCount(1);

    // A falling loss, as the page shows it, and a first evaluation.
    await expect
      .poll(
        async () => {
          const loss = await lossOnPage(dashboard);
          return loss !== undefined && loss.lastRound >= 6 && loss.last < loss.first;
        },
        { timeout: TRAIN_TIMEOUT_MS, ...POLL, message: "the loss shown falls over at least 6 rounds" },
      )
      .toBe(true);
    await expect(dashboard.getByTestId("accuracy-summary")).toContainText("%", { timeout: 60_000 });
    await expect(dashboard.getByTestId("tile-eta")).toContainText(/\d+ rounds left/);

    // With the token, the controls work.
    await dashboard.getByLabel("Admin token").fill(TOKEN);
    await dashboard.getByRole("button", { name: "Unlock" }).click();
    await expect(dashboard.getByTestId("mode")).toHaveText("operator");
    await dashboard.getByRole("button", { name: "Pause" }).click();
    await expect(dashboard.getByTestId("training-status")).toHaveText("paused");
    const paused = await fetchStatus(server.url);
    expect(paused.status).toBe("paused");
    // A near target, set while paused: rounds (under a second each) cannot overtake it meanwhile.
    const target = paused.round + 2;
    await dashboard.getByLabel("Target rounds").fill(String(target));
    await dashboard.getByRole("button", { name: "Set target" }).click();
    await expect(dashboard.getByTestId("tile-round")).toContainText(`/ ${target}`);
    await dashboard.getByRole("button", { name: "Resume" }).click();
    await expect(dashboard.getByTestId("training-status")).toHaveText(/running|done/);

    const screenshot = testInfo.outputPath("dashboard.png");
    await dashboard.screenshot({ path: screenshot, fullPage: true });
    await testInfo.attach("dashboard", { path: screenshot, contentType: "image/png" });
    const ring = testInfo.outputPath("ring-3.png");
    await dashboard.getByTestId("ring-graph").screenshot({ path: ring });
    await testInfo.attach("ring-3", { path: ring, contentType: "image/png" });

    // The near target ends the job; the page says so.
    await expect(dashboard.getByTestId("training-status")).toHaveText("done", { timeout: TRAIN_TIMEOUT_MS });
    await expect(dashboard.getByTestId("tile-eta")).toContainText("finished");
    expect((await fetchStatus(server.url)).round).toBeLessThanOrEqual(target);

    // The server restarts (it checkpointed on SIGTERM and resumes the finished job): the page says it
    // is reconnecting, then shows the new server's feed, without a reload.
    const sawReconnecting = dashboard.getByTestId("reconnecting").waitFor({ timeout: 60_000 });
    await server.restart();
    await sawReconnecting;
    await expect(dashboard.getByTestId("connection")).toHaveText("live", { timeout: 30_000 });
    await expect(dashboard.getByText(/resumed from the checkpoint of round/)).toBeVisible();
    await expect(dashboard.getByTestId("training-status")).toHaveText("done");
    expect(await dashboard.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
    expect(dialogs).toBe(0);
  });
});

test("the dashboard stays readable with 64 peers", async ({ openWorkers }, testInfo) => {
  const [page] = await openWorkers(1, "/dashboard");
  if (page === undefined) throw new Error("no dashboard page");
  await page.setViewportSize({ width: 1440, height: 1000 });
  // Stand in for the server's event stream with a made-up swarm of 64 (no 64 tabs on two cores).
  await page.addInitScript((json: string) => {
    class FakeEventSource extends EventTarget {
      static readonly CONNECTING = 0;
      static readonly OPEN = 1;
      static readonly CLOSED = 2;
      readyState = 1;
      onmessage: ((event: MessageEvent) => void) | null = null;
      onerror: (() => void) | null = null;
      private readonly timer = setInterval(() => this.onmessage?.(new MessageEvent("message", { data: json })), 1_000);
      constructor(readonly url: string) {
        super();
        setTimeout(() => this.onmessage?.(new MessageEvent("message", { data: json })), 0);
      }
      close(): void {
        clearInterval(this.timer);
        this.readyState = 2;
      }
    }
    (window as unknown as { EventSource: unknown }).EventSource = FakeEventSource;
  }, JSON.stringify(fakeStatus(64, { now: Date.now() })));
  await page.reload();

  await expect(page.locator("[data-testid=peers] tbody tr")).toHaveCount(65);
  await expect(page.locator("[data-testid=ring-graph] [data-ring-index]")).toHaveCount(64);
  // The table scrolls inside its card instead of stretching the page.
  const scroll = await page.getByTestId("peers-scroll").evaluate((el) => ({ scrollHeight: el.scrollHeight, clientHeight: el.clientHeight }));
  expect(scroll.scrollHeight).toBeGreaterThan(scroll.clientHeight);
  expect(scroll.clientHeight).toBeLessThanOrEqual(420);
  // In the browser's own text metrics: every label inside the drawing, no two overlapping.
  const drawing = await page.getByTestId("ring-graph").evaluate((svg) => {
    const { width, height } = (svg as SVGSVGElement).viewBox.baseVal;
    const quads = [...svg.querySelectorAll<SVGTextElement>("text.ring-label, text.ring-link-label")].map((text) => {
      const box = text.getBBox();
      const match = /rotate\(([-\d.]+) ([-\d.]+) ([-\d.]+)\)/.exec(text.getAttribute("transform") ?? "");
      const [degrees, cx, cy] = match === null ? [0, 0, 0] : [Number(match[1]), Number(match[2]), Number(match[3])];
      const a = (degrees * Math.PI) / 180;
      const turn = (x: number, y: number) => ({ x: cx + (x - cx) * Math.cos(a) - (y - cy) * Math.sin(a), y: cy + (x - cx) * Math.sin(a) + (y - cy) * Math.cos(a) });
      return {
        label: text.textContent ?? "",
        quad: [turn(box.x, box.y), turn(box.x + box.width, box.y), turn(box.x + box.width, box.y + box.height), turn(box.x, box.y + box.height)] as Quad,
      };
    });
    return { width, height, quads };
  });
  expect(drawing.quads.length).toBeGreaterThanOrEqual(64);
  const outside = drawing.quads.filter(({ quad }) => quad.some((p) => p.x < 0 || p.y < 0 || p.x > drawing.width || p.y > drawing.height)).map((q) => q.label);
  expect(outside).toEqual([]);
  const overlapping: string[] = [];
  drawing.quads.forEach((a, i) => drawing.quads.slice(i + 1).forEach((b) => quadsOverlap(a.quad, b.quad) && overlapping.push(`${a.label} / ${b.label}`)));
  expect(overlapping).toEqual([]);
  const ring = testInfo.outputPath("ring-64.png");
  await page.getByTestId("ring-graph").screenshot({ path: ring });
  await testInfo.attach("ring-64", { path: ring, contentType: "image/png" });
  const screenshot = testInfo.outputPath("dashboard-64.png");
  await page.screenshot({ path: screenshot, fullPage: true });
  await testInfo.attach("dashboard-64", { path: screenshot, contentType: "image/png" });
});
