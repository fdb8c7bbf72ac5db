// npm run bench:allreduce — ring all-reduce (and, from 4 tabs, the torus the coordinator would plan
// for them) in real tabs over WebRTC against the point-to-point link between two of the same tabs,
// same frame size, same run; then the same through a coturn TURN
// relay (relay-only ICE) inside the e2e namespace. Writes e2e/results/allreduce.json.
import { spawnSync } from "node:child_process";
import type { Page } from "@playwright/test";
import { expect, test } from "../fixtures.ts";
import { startCoturn } from "../support/coturn.ts";
import { insideE2eNamespace } from "../support/link-profile.ts";
import { groupsShape, torusShape } from "../../packages/coordination/src/plans.ts";
import { mb, median, table, writeResults } from "./report.ts";

/** Overridable for a quick look at one case, e.g. BENCH_PEERS=4 BENCH_SIZES=4194304 BENCH_FRAME_BYTES=262124. */
const listFromEnv = (name: string, fallback: number[]): number[] => (process.env[name] ? process.env[name].split(",").map(Number) : fallback);
const PEER_COUNTS = listFromEnv("BENCH_PEERS", [2, 4, 6]);
const SIZES = listFromEnv("BENCH_SIZES", [256 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024]);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const BLASTS = 3;
const FRAME_BYTES = Number(process.env.BENCH_FRAME_BYTES ?? 64 * 1024);
/** Every tab starts a round at the same wall-clock instant, this far after the test asks. */
const START_DELAY_MS = 300;
const BLAST_TIMEOUT_MS = 120_000;
const BENCH_TIMEOUT_MS = 40 * 60_000;
/** The relay rows: fewer cases, since every byte crosses coturn twice. */
const RELAY_PEER_COUNTS = listFromEnv("BENCH_RELAY_PEERS", [2, 4]);
const RELAY_SIZES = listFromEnv("BENCH_RELAY_SIZES", [4 * 1024 * 1024]);
const NAMESPACE_ADDRESS = "10.88.0.1";
const TURN_PORT = 3478;

type Row = {
  /** direct: WebRTC between the tabs; relay: every byte through a coturn TURN relay. */
  path: "direct" | "relay";
  /** "ring", or "torus XxY" (+A attached): the plan the coordinator would give these tabs with topology "torus". */
  layout: string;
  n: number;
  bytes: number;
  frameBytes: number;
  rounds: number;
  roundMs: number;
  sentBytesPerPeer: number;
  bytesRatio: number;
  algbw: number;
  busbw: number;
  linkBw: number;
  busbwOverLink: number;
  /** Per-link bandwidth when every tab blasts to its ring neighbour at once (the ring's real load). */
  ringLinksBw: number;
  busbwOverRingLinks: number;
};

/**
 * One-way bandwidth of the links i -> i+1 of `pairs`, all blasting at once (one pair alone gives the
 * plain point-to-point link). Median over BLASTS repetitions of the median link.
 */
async function linkBandwidth(pages: Page[], ids: string[], pairs: [number, number][], bytes: number): Promise<number> {
  const speeds: number[] = [];
  for (let k = 0; k < BLASTS; k++) {
    await Promise.all(
      pairs.map(([from, to]) =>
        pages[to]!.evaluate(([id, n, t]) => window.crowdtrainLab.arListenBlast(id, n, t), [ids[from]!, bytes, BLAST_TIMEOUT_MS] as const),
      ),
    );
    await Promise.all(pairs.map(([from, to]) => pages[from]!.evaluate(([id, n, f]) => window.crowdtrainLab.arBlast(id, n, f), [ids[to]!, bytes, FRAME_BYTES] as const)));
    const reports = await Promise.all(pairs.map(([, to]) => pages[to]!.evaluate(() => window.crowdtrainLab.arBlastDone())));
    speeds.push(median(reports.map((r) => r.bytes / (r.ms / 1000))));
  }
  return median(speeds);
}

/** Attempt ids: one sequence for the whole run, as a reducer refuses to reuse one. */
let attempt = 0;

/** Rounds of each size over `pages` (already opened on one server), then the links, as rows. */
/** A layout's arguments to the lab's arRun: none for the ring, `columns` for a torus, `dims` for groups. */
type LayoutArgs = { columns?: number; dims?: number[] };

/** Median round time and mean bytes sent per tab of ROUNDS rounds (after a warm-up), in one layout. */
async function rounds(pages: Page[], ring: string[], length: number, layout: LayoutArgs): Promise<{ roundMs: number; sentBytesPerPeer: number }> {
  const times: number[] = [];
  const sent: number[] = [];
  for (let k = 0; k <= ROUNDS; k++) {
    attempt++;
    const startAt = Date.now() + START_DELAY_MS;
    const runs = await Promise.all(pages.map((p, i) => p.evaluate((args) => window.crowdtrainLab.arRun(args), { attempt, ring, seed: i + 1, length, samples: 1, startAt, ...layout })));
    const hashes = new Set(runs.map((r) => (r.ok ? r.hash : `failed: ${JSON.stringify(r.error)}`)));
    expect(hashes.size, [...hashes].join("\n")).toBe(1);
    if (k === 0) continue; // warm-up: first use of these buffers and frame sizes
    times.push(Math.max(...runs.map((r) => r.ms)));
    sent.push(...runs.map((r) => (r.ok ? r.bytesSent : 0)));
  }
  return { roundMs: median(times), sentBytesPerPeer: sent.reduce((a, b) => a + b, 0) / sent.length };
}

async function measure(pages: Page[], path: Row["path"], sizes: number[], rows: Row[]): Promise<void> {
  const n = pages.length;
  const ring = await Promise.all(pages.map((p) => p.evaluate((frameBytes) => window.crowdtrainLab.arOpen({ frameBytes, roundTimeoutMs: 600_000, progressTimeoutMs: 60_000, ringStartTimeoutMs: 60_000 }), FRAME_BYTES)));
  await Promise.all(pages.map((p) => p.evaluate((ids) => window.crowdtrainLab.arConnect(ids), ring)));
  // The torus these tabs would get with topology "torus" (none below 4), and the groups grid with
  // topology "groups" where it is not that torus (three dimensions or more), on the same tabs.
  const shape = path === "direct" ? torusShape(n) : undefined;
  const groups = path === "direct" ? groupsShape(n) : undefined;
  const attachedSuffix = (attached: number): string => (attached > 0 ? `+${attached}` : "");
  const layouts: [string, LayoutArgs][] = [
    ["ring", {}],
    ...(shape === undefined ? [] : [[`torus ${shape.columns}x${shape.rows}${attachedSuffix(shape.attached)}`, { columns: shape.columns }] as [string, LayoutArgs]]),
    ...(groups === undefined || groups.dims.length < 3 ? [] : [[`groups ${groups.dims.join("x")}${attachedSuffix(groups.attached)}`, { dims: groups.dims }] as [string, LayoutArgs]]),
  ];
  for (const bytes of sizes) {
    const length = bytes / 4;
    const measured = [];
    for (const [layout, args] of layouts) measured.push({ layout, ...(await rounds(pages, ring, length, args)) });
    const ideal = (2 * (n - 1) * bytes) / n;
    const blastBytes = Math.ceil(ideal);
    const linkBw = await linkBandwidth(pages, ring, [[0, 1]], blastBytes);
    const ringPairs = pages.map((_, i) => [i, (i + 1) % n] as [number, number]);
    const ringLinksBw = await linkBandwidth(pages, ring, ringPairs, blastBytes);
    for (const { layout, roundMs, sentBytesPerPeer } of measured) {
    const algbw = bytes / (roundMs / 1000);
    const busbw = (algbw * 2 * (n - 1)) / n;
    const row: Row = {
      path,
      layout,
      n,
      bytes,
      frameBytes: FRAME_BYTES,
      rounds: ROUNDS,
      roundMs,
      sentBytesPerPeer,
      bytesRatio: sentBytesPerPeer / ideal,
      algbw,
      busbw,
      linkBw,
      busbwOverLink: busbw / linkBw,
      ringLinksBw,
      busbwOverRingLinks: busbw / ringLinksBw,
    };
    rows.push(row);
    writeResults(process.env.BENCH_OUT ?? "allreduce", rows); // after every row, so an interrupted run keeps what it measured
    console.log(`${path} ${layout} n=${n} S=${bytes}: round ${roundMs.toFixed(0)} ms, busbw ${mb(busbw)} MB/s, link ${mb(linkBw)} MB/s, ring links at once ${mb(ringLinksBw)} MB/s`);
    }
  }
}

test("ring all-reduce vs point-to-point link, direct and through a TURN relay", async ({ openWorkers, launchServer }) => {
  test.setTimeout(BENCH_TIMEOUT_MS);
  const rows: Row[] = [];
  for (const n of PEER_COUNTS) {
    const pages = await openWorkers(n, "/lab.html");
    await measure(pages, "direct", SIZES, rows);
    await Promise.all(pages.map((p) => p.context().close()));
  }
  // The relay rows: every byte through coturn in the namespace (relay-only ICE), where there is one.
  const relayWhy = !insideE2eNamespace() ? "not inside the e2e network namespace" : spawnSync("turnserver", ["--version"]).error !== undefined ? "turnserver (coturn) is not installed" : undefined;
  if (relayWhy !== undefined) console.log(`relay rows skipped: ${relayWhy}`);
  else {
    const turn = await startCoturn(NAMESPACE_ADDRESS, TURN_PORT);
    try {
      const server = await launchServer(["--turn-url", turn.url, "--turn-secret", turn.secret, "--ice-transport-policy", "relay"]);
      for (const n of RELAY_PEER_COUNTS) {
        const pages = await openWorkers(n, "/lab.html", server);
        await measure(pages, "relay", RELAY_SIZES, rows);
        await Promise.all(pages.map((p) => p.context().close()));
      }
    } finally {
      await turn.stop();
    }
  }
  const file = writeResults(process.env.BENCH_OUT ?? "allreduce", rows);
  console.log(
    `\n${table(
      ["path", "layout", "N", "S (KiB)", "round ms", "sent/peer (KiB)", "bytesRatio", "algbw MB/s", "busbw MB/s", "link MB/s", "busbw/link", "ring links MB/s", "busbw/ring links"],
      rows.map((r) => [
        r.path,
        r.layout,
        String(r.n),
        String(r.bytes / 1024),
        r.roundMs.toFixed(0),
        (r.sentBytesPerPeer / 1024).toFixed(0),
        r.bytesRatio.toFixed(4),
        mb(r.algbw),
        mb(r.busbw),
        mb(r.linkBw),
        r.busbwOverLink.toFixed(2),
        mb(r.ringLinksBw),
        r.busbwOverRingLinks.toFixed(2),
      ]),
    )}\nframe payload ${FRAME_BYTES} bytes; median of ${ROUNDS} rounds; written to ${file}`,
  );
  for (const r of rows) expect(r.bytesRatio).toBeLessThanOrEqual(1.02);
});
