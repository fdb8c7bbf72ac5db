// The whole page rendered to HTML in Node (no browser): from 0 to 64 peers, hostile names as text.
import { createElement } from "react";
import { renderToStaticMarkup } from "react-dom/server";
import { parseStatus, type Status } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { Controls } from "../src/components/Controls.tsx";
import { Dashboard } from "../src/components/Dashboard.tsx";
import type { FeedState } from "../src/feed.ts";
import { fakeStatus } from "./fake-status.ts";

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
