// The whole page rendered to HTML in Node (no browser): from 0 to 64 peers, hostile names as text.
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { parseStatus, type AuditRecord, type Status } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { Controls } from "../src/components/Controls.tsx";
import { Dashboard } from "../src/components/Dashboard.tsx";
import type { FeedState } from "../src/feed.ts";
import { fakeServing, fakeStatus } from "./fake-status.ts";

const ORIGIN = "http://10.0.0.5:8080";

function render(status: Status | undefined, change: Partial<FeedState> = {}): string {
  const feed: FeedState = { status, connection: "live", problem: undefined, receivedAt: 0, ...change };
  const controls = createElement(Controls, { status, initialToken: undefined, request: () => Promise.reject(new Error("no requests here")), storeToken: () => undefined });
  return renderToStaticMarkup(createElement(Dashboard, { feed, origin: ORIGIN, controls }));
}

const count = (html: string, pattern: RegExp) => html.match(new RegExp(pattern, "g"))?.length ?? 0;

describe("the dashboard page", () => {
  it("is a valid status by the protocol's own schema (the fake used below)", () => {
    expect(() => parseStatus(JSON.parse(JSON.stringify(fakeStatus(64))))).not.toThrow();
  });

  it("says how to join while there is no worker", () => {
    const empty: Status = { ...fakeStatus(0), peers: [], ring: [], lastRing: undefined, openRound: undefined, loss: [], accuracy: [], recentRounds: [], round: 0, status: "waiting" };
    const html = render(empty);
    expect(html).toContain("No worker yet");
    expect(html).toContain(`${ORIGIN}/`);
    expect(html).toContain("No ring yet");
  });

  it("shows 64 peers: a row each (plus the departed one), a node each in ring order", () => {
    const status = fakeStatus(64);
    const html = render(status);
    expect(count(html, /<tr class="state-/)).toBe(65);
    expect(count(html, /class="ring-node"/)).toBe(64);
    expect(count(html, /data-ring-index="\d+"/)).toBe(64);
    expect(html).toContain("Ring order (64 peers)");
    expect(html.indexOf('data-ring-index="0"')).toBeLessThan(html.indexOf('data-ring-index="63"'));
  });

  it("a swarm larger than its status: totals on the tile, the rows shown and where the rest are, the ring's size and slowest links instead of a drawing", () => {
    const status = fakeStatus(64);
    const ring = status.lastRing as NonNullable<Status["lastRing"]>;
    const large: Status = {
      ...status,
      ring: [],
      openRound: undefined,
      peerTotals: { live: 1000, training: 990, gone: 7 },
      lastRing: { ...ring, ringSize: 1000, links: ring.links.slice(0, 12) },
    };
    const html = render(large);
    expect(html).toMatch(/data-testid="tile-peers"[^]*?>1000<[^]*?990 training · 7 gone/);
    expect(html).toContain(`showing the ${status.peers.length} needing attention most`);
    expect(html).toContain('href="/api/peers"');
    expect(html).toContain('data-testid="ring-partial"');
    expect(html).toContain("Ring of 1,000 peers");
    expect(count(html, /class="ring-node"/)).toBe(0);
    // Ten slowest links listed, in the order the server sent them (slowest first).
    expect(count(html, /<li title="[^"]+ → [^"]+">/)).toBe(10);
    // A swarm the status carries whole shows no such note.
    expect(render(status)).not.toContain("needing attention most");
  });

  it("renders a hostile peer name as text, in the table and on the ring", () => {
    const status = fakeStatus(3);
    const evil = "<b>bold</b><img src=x onerror=alert(1)>";
    status.peers[0] = { ...(status.peers[0] as Status["peers"][number]), name: evil };
    const html = render(status);
    expect(html).not.toContain("<b>bold</b>");
    expect(html).not.toContain("<img");
    expect(html).toContain("&lt;b&gt;bold&lt;/b&gt;&lt;img src=x onerror=alert(1)&gt;");
    // The event log names the peer by its (escaped) name, with its id in the tooltip.
    expect(html).toMatch(/<span class="peer-ref" title="[^"]+">&lt;b&gt;bold/);
  });

  it("shows each peer's spot checks, failures highlighted as strikes are", () => {
    const status = fakeStatus(3);
    const html = render(status);
    const auditsCell = (i: number) => new RegExp(`<tr class="state-\\w+" data-peer-id="${status.peers[i]?.id}">.*?data-testid="peer-audits">([^<]*)<`).exec(html);
    expect(auditsCell(0)?.[0]).toMatch(/<td class="num struck" data-testid="peer-audits">3 ✓ · 1 ✗<$/);
    expect(auditsCell(1)?.[0]).toMatch(/<td class="num" data-testid="peer-audits">2 ✓ · 0 ✗<$/);
    expect(auditsCell(2)?.[1]).toBe("–");
  });

  it("lists the latest spot checks newest first, with a failure's detail as text, and hides them when the server has none", () => {
    const status = fakeStatus(3);
    const audits = status.audits as NonNullable<Status["audits"]>;
    audits.recent[audits.recent.length - 1] = { ...(audits.recent.at(-1) as AuditRecord), detail: "<img src=x onerror=alert(1)> differs" };
    const html = render(status);
    expect(html).toContain('data-testid="audits-panel"');
    expect(html).toMatch(/data-testid="audits-summary">9 passed · <span class="struck">1 failed<\/span> · tolerance 1\.0e-4/);
    expect(count(html, /data-testid="audit"/)).toBe(3);
    expect(html).not.toContain("<img");
    expect(html).toContain("&lt;img src=x onerror=alert(1)&gt; differs");
    // The failure (newest) comes before the older pass, with its relative error in scientific notation.
    expect(html.indexOf('class="pill audit-failed"')).toBeLessThan(html.indexOf('class="pill audit-passed"'));
    expect(html).toContain("3.1e-2");
    expect(html).toMatch(/class="event event-audit"[\s\S]*FAILED/);
    expect(html).toContain('class="event event-rollback"');
    expect(render({ ...status, audits: undefined })).not.toContain('data-testid="audits-panel"');
  });

  it("shows only the last ten spot checks", () => {
    const status = fakeStatus(3);
    const audit = status.audits?.recent[0] as AuditRecord;
    const recent = Array.from({ length: 25 }, (_, i) => ({ ...audit, round: i + 1, at: audit.at + i, detail: `check ${i + 1}` }));
    const html = render({ ...status, audits: { tolerance: 1e-4, passed: 25, failed: 0, recent } });
    expect(count(html, /data-testid="audit"/)).toBe(10);
    expect(html).toContain("check 25");
    expect(html).toContain("check 16");
    expect(html).not.toContain("check 15<");
  });

  it("shows the serving pool: headline numbers, a chart each, the tabs and the decisions newest first", () => {
    const status = fakeStatus(3);
    const html = render({ ...status, serving: fakeServing(status.now) });
    expect(() => parseStatus(JSON.parse(JSON.stringify({ ...status, serving: fakeServing(status.now) })))).not.toThrow();
    expect(html).toContain('data-testid="serving-panel"');
    expect(html).toContain('data-testid="serving-pool">2<');
    expect(html).toContain('data-testid="serving-bounds">(1–8)<');
    expect(html).toContain('data-testid="serving-panic"');
    expect(html).toContain('data-testid="serving-served">1,234<');
    expect(html).toMatch(/class="struck" data-testid="serving-errors">7</);
    for (const chart of ["Serving pool size over time", "Offered and served requests per second", "Latency percentiles of answered requests", "Queue depth and errors per window"]) {
      expect(html).toContain(`aria-label="${chart}"`);
    }
    expect(count(html, /data-testid="serving-tab"/)).toBe(2);
    expect(html).toContain("dedicated");
    expect(html).toContain("moved from training");
    expect(count(html, /data-testid="scale-decision"/)).toBe(2);
    expect(html.indexOf("2 → 3")).toBeLessThan(html.indexOf("1 → 2"));
    expect(html).toMatch(/data-testid="tile-peers"[^]*?2 training · 2 serving · 1 gone/);
  });

  it("shows a pipeline job's plan (replicas × stages, who holds which layers), each stage's busy share and the bubble beside theory", () => {
    const status = fakeStatus(4);
    const ids = status.peers.slice(0, 4).map((p) => p.id);
    const plan = { kind: "pipeline" as const, stages: [{ from: 0, to: 3 }, { from: 3, to: 6 }], replicas: [ids.slice(0, 2), ids.slice(2, 4)], microBatches: 4, schedule: "gpipe" as const };
    const pipeline: Status["pipeline"] = { last: { round: 41, plan, stageHashes: ["a".repeat(64), "b".repeat(64)], stages: [{ spanMs: 900, busyMs: 630 }, { spanMs: 900, busyMs: 450 }], bubble: 0.4, bubbleTheory: 0.2 } };
    expect(() => parseStatus(JSON.parse(JSON.stringify({ ...status, pipeline })))).not.toThrow();
    const html = render({ ...status, pipeline });
    expect(html).toContain('data-testid="pipeline-panel"');
    expect(html).toContain("2 stages × 2 replicas · 4 micro-batches · gpipe · bubble 40.0% measured in round 41, 20.0% in theory");
    expect(count(html, /data-testid="pipeline-replica"/)).toBe(2);
    expect(html).toContain("Stage 0 · layers 0–2");
    expect(html).toContain("Stage 1 · layers 3–5");
    expect(html).toMatch(/busy 70% of 900 ms[^]*busy 50% of 900 ms/);
    // Each member is named in its replica's row, under its stage.
    for (const id of ids) expect(html).toContain(`title="${id}"`);
    // A data-parallel job has no pipeline panel.
    expect(render(status)).not.toContain('data-testid="pipeline-panel"');
  });

  it("shows empty states before any request, and hides the panel for a server without serving", () => {
    const status = fakeStatus(3);
    const html = render({ ...status, serving: { ...fakeServing(status.now, 0), tabs: [], decisions: [], panic: false, errors: 0 } });
    expect(html).toContain('data-testid="serving-panel"');
    expect(html).not.toContain('data-testid="serving-panic"');
    expect(count(html, /No requests yet\./g)).toBe(2);
    expect(html).toContain("No request answered yet.");
    expect(html).toContain("No tab serves now");
    expect(html).toContain("No scale decision yet");
    expect(render(status)).not.toContain("serving-panel");
  });

  it("renders the autoscaler's reasons and serving tabs' names as text, and a serving peer without a batch share", () => {
    const status = fakeStatus(3);
    const serving = fakeServing(status.now);
    const evil = "<img src=x onerror=alert(1)>";
    serving.decisions[0] = { ...(serving.decisions[0] as NonNullable<Status["serving"]>["decisions"][number]), reason: evil };
    const tabId = serving.tabs[0]?.id as string;
    const peers = [...status.peers, { ...(status.peers[0] as Status["peers"][number]), id: tabId, name: `${evil} server`, state: "serving" as const, share: 0.5 }];
    const html = render({ ...status, peers, serving });
    expect(html).not.toContain("<img");
    expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
    const row = new RegExp(`<tr class="state-serving" data-peer-id="${tabId}">.*?</tr>`).exec(html)?.[0] ?? "";
    expect(row).toContain('class="pill pill-serving"');
    expect(row).not.toContain("50%");
  });

  it("is read-only without a token: the controls are disabled and say so", () => {
    const html = render(fakeStatus(3));
    expect(html).toContain('data-testid="mode">read-only<');
    expect(html).toMatch(/<button type="button" disabled="" title="Read-only[^"]*">Pause<\/button>/);
  });

  it("says it is reconnecting, and keeps the last status on screen", () => {
    const html = render(fakeStatus(3), { connection: "reconnecting" });
    expect(html).toContain("reconnecting…");
    expect(html).toContain('data-testid="peers"');
  });
});
