import type { Page } from "@playwright/test";
import { labInputValue } from "../../apps/worker/src/lab/input.ts";
import { expect, test } from "../fixtures.ts";

/** 1 MiB of float32 per tab, as the issue asks. */
const LENGTH = 256 * 1024;
/** Short, so the dead-peer test proves survivors give up within it; the run asserts against it. */
const PROGRESS_TIMEOUT_MS = 3_000;
/** Tabs start a round within milliseconds of each other here; it bounds detection before the ring is full. */
const RING_START_TIMEOUT_MS = 4_000;
const ROUND_TIMEOUT_MS = 20_000;
/**
 * Slack on top of a timeout for two busy cores to deliver the verdict to the test (a CI run saw
 * 2.1 s); still far below ROUND_TIMEOUT_MS, so a verdict within it came from the timeout in force.
 */
const VERDICT_SLACK_MS = 4_000;

async function openRing(pages: Page[]): Promise<string[]> {
  const ids = await Promise.all(
    pages.map((page) =>
      page.evaluate(
        ([progressTimeoutMs, ringStartTimeoutMs, roundTimeoutMs]) =>
          window.crowdtrainLab.arOpen({ frameBytes: 64 * 1024, progressTimeoutMs, ringStartTimeoutMs, roundTimeoutMs }),
        [PROGRESS_TIMEOUT_MS, RING_START_TIMEOUT_MS, ROUND_TIMEOUT_MS] as const,
      ),
    ),
  );
  await Promise.all(pages.map((page) => page.evaluate((ring) => window.crowdtrainLab.arConnect(ring), ids)));
  return ids;
}

function run(page: Page, attempt: number, ring: string[], seed: number, length = LENGTH, columns?: number) {
  return page.evaluate((args) => window.crowdtrainLab.arRun(args), { attempt, ring, seed, length, samples: seed, ...(columns === undefined ? {} : { columns }) });
}

test("4 tabs all-reduce 1 MiB over WebRTC and agree bit for bit, on the sample-weighted mean, as a ring and as tori", async ({ openWorkers }) => {
  const pages = await openWorkers(4, "/lab.html");
  const ring = await openRing(pages);
  const seeds = [1, 2, 3, 4];
  const runs = await Promise.all(pages.map((page, k) => run(page, 1, ring, seeds[k]!)));
  const hashes = runs.map((r) => {
    if (!r.ok) throw new Error(`tab failed: ${JSON.stringify(r.error)}`);
    return r.hash;
  });
  expect(new Set(hashes).size).toBe(1);
  const first = runs[0]!;
  if (!first.ok) throw new Error("unreachable");
  expect(first.totalSamples).toBe(10);
  // Spot-check the head against the float64 mean of the same inputs, rounded as float32 inputs are.
  first.head.forEach((value, i) => {
    const expected = seeds.reduce((sum, s) => sum + s * Math.fround(labInputValue(s, i)), 0) / 10;
    expect(Math.abs(value - expected)).toBeLessThan(1e-5 * (1 + Math.abs(expected)));
  });
  // Bandwidth-optimal: each tab sends 2(N-1)/N of the vector (plus the count and 20-byte headers).
  const ideal = (2 * 3 * (LENGTH + 1) * 4) / 4;
  expect(first.bytesSent / ideal).toBeLessThan(1.01);

  // The same tabs as a 2x2 torus, then as a row of 3 with the fourth attached: again one set of bits,
  // the same mean within float32 rounding, and (the 2x2) the flat ring's bytes.
  for (const [attempt, columns] of [[2, 2], [3, 3]] as const) {
    const torus = await Promise.all(pages.map((page, k) => run(page, attempt, ring, seeds[k]!, LENGTH, columns)));
    const results = torus.map((r) => {
      if (!r.ok) throw new Error(`torus ${columns} columns: tab failed: ${JSON.stringify(r.error)}`);
      return r;
    });
    expect(new Set(results.map((r) => r.hash)).size).toBe(1);
    expect(results[0]!.totalSamples).toBe(10);
    results[0]!.head.forEach((value, i) => expect(Math.abs(value - first.head[i]!)).toBeLessThan(1e-5 * (1 + Math.abs(first.head[i]!))));
    if (columns === 2) expect(results[0]!.bytesSent / ideal).toBeLessThan(1.01);
  }
});

test("a tab closed mid-round makes the other three fail with a typed error naming it, then a 3-peer ring succeeds", async ({ openWorkers }) => {
  const pages = await openWorkers(4, "/lab.html");
  const ring = await openRing(pages);
  const [a, b, victim, d] = pages as [Page, Page, Page, Page];
  // 8 MiB per tab: several seconds on these links, so the close lands mid-round.
  const big = 2 * 1024 * 1024;
  const survivors = [a, b, d];
  const pending = survivors.map((page, k) => run(page, 1, ring, k + 1, big).then((outcome) => ({ outcome, at: Date.now() })));
  const victimRun = run(victim, 1, ring, 9, big).catch((error: unknown) => ({ closed: String(error) }));
  await expect.poll(() => a.evaluate(() => window.crowdtrainLab.arProgress().framesReceived), { timeout: 30_000 }).toBeGreaterThan(4);
  const closedAt = Date.now();
  await victim.context().close();
  const verdicts = await Promise.all(pending);
  await victimRun;
  // Each survivor's left neighbour (the one it receives from) in the ring a -> b -> victim -> d -> a.
  const leftOf = [ring[3], ring[0], ring[2]];
  for (const [k, { outcome, at }] of verdicts.entries()) {
    // Detected by the closed link (peer-gone: Chromium reports ICE 'disconnected' ~5 s after a tab
    // vanishes) or the abort it triggers, else by the timeout in force: ringStartTimeoutMs until the
    // whole ring has been heard from, progressTimeoutMs after.
    expect(at - closedAt).toBeLessThan(Math.max(PROGRESS_TIMEOUT_MS, RING_START_TIMEOUT_MS) + VERDICT_SLACK_MS);
    expect(outcome.ok).toBe(false);
    if (outcome.ok) continue;
    expect(["peer-gone", "aborted", "timeout"]).toContain(outcome.error.code);
    if (outcome.error.suspect !== ring[2]) {
      // Further down, a live neighbour stalled by the victim looks exactly like a silent one. When a
      // survivor's own timer fires before the abort naming the victim arrives (2 loaded cores), it
      // can only name the neighbour it waited for, first-hand; the coordinator strikes nobody on
      // one such word (packages/coordination accusations.ts). It never names anyone else.
      // Either first-hand (its own timer, naming its left neighbour), or that same word relayed by an
      // abort from the survivor whose timer it was. That holds for d too, whose left neighbour is the
      // victim: once, on 2 loaded cores, another survivor's abort reached it before it noticed.
      const firstHand = verdicts.flatMap(({ outcome: o }, j) => (!o.ok && o.error.code === "timeout" && o.error.suspect === leftOf[j] ? [leftOf[j]] : []));
      if (outcome.error.code === "aborted") expect(firstHand).toContain(outcome.error.suspect);
      else expect({ code: outcome.error.code, suspect: outcome.error.suspect }).toEqual({ code: "timeout", suspect: leftOf[k] });
    }
  }
  const newRing = [ring[0]!, ring[1]!, ring[3]!];
  let again = await Promise.all(survivors.map((page, k) => run(page, 2, newRing, k + 1)));
  // What is under test: the survivors form a ring that completes. With this test's 3 s progress
  // timeout, two loaded cores once (in seven full e2e runs) timed out that first 3-peer attempt; a
  // timed-out attempt is retried once under a new attempt id, as the coordinator would.
  const timedOut = again.flatMap((r) => (!r.ok && (r.error.code === "timeout" || r.error.code === "aborted") ? [r.error.message] : []));
  if (timedOut.length > 0) {
    console.log(`allreduce: 3-peer attempt 2 timed out (${timedOut[0]}); attempt 3`);
    again = await Promise.all(survivors.map((page, k) => run(page, 3, newRing, k + 1)));
  }
  const hashes = again.map((r) => (r.ok ? r.hash : JSON.stringify(r.error)));
  expect(again.every((r) => r.ok), hashes.join("\n")).toBe(true);
  expect(new Set(hashes).size).toBe(1);
});
