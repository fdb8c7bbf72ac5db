import type { ReactNode } from "react";
import type { PeerStatus, ServingStatus } from "@crowdtrain/protocol";
import { clockTicks } from "../logic/chart.ts";
import { formatClock, formatCount, formatDuration, formatRps } from "../logic/format.ts";
import { lastAnsweredWindow, servingSeries } from "../logic/serving.ts";
import { ERRORS_COLOR, LATENCY_COLORS, OFFERED_COLOR, POOL_COLOR, QUEUE_COLOR, SERVED_COLOR } from "./colors.ts";
import { LineChart, type ChartXAxis } from "./LineChart.tsx";
import { ScaleDecisionsTable, ServingTabsTable } from "./ServingTables.tsx";

export type ServingPanelProps = { serving: ServingStatus; peers: readonly PeerStatus[] };

/** Windows are stamped with the server clock; the panel shows them as wall-clock times, as the decisions are. */
const CLOCK_AXIS: ChartXAxis = { name: "time", format: (seconds) => formatClock(seconds * 1_000), ticks: clockTicks };
/** Tabs, queued requests and errors are whole numbers: a fractional tick keeps its gridline but no label. */
const countTick = (value: number) => (Number.isInteger(value) ? String(value) : "");
/** Four charts share a card: shorter than the training charts so they fit side by side. */
const CHART_HEIGHT = 170;
const NO_REQUESTS = "No requests yet.";

/** The inference API and its autoscaled pool of serving tabs: headline numbers, charts over the recent windows, tabs and scale decisions. */
export function ServingPanel({ serving, peers }: ServingPanelProps) {
  return (
    <section className="card span-12" data-testid="serving-panel">
      <h2>
        Serving <span className="muted">POST /api/predict, answered by a pool of tabs the autoscaler grows and shrinks</span>
      </h2>
      <ServingHeadline serving={serving} />
      <ServingCharts serving={serving} />
      <div className="serving-tables">
        <ServingTabsTable tabs={serving.tabs} peers={peers} />
        <ScaleDecisionsTable decisions={serving.decisions} />
      </div>
    </section>
  );
}

function ServingHeadline({ serving }: { serving: ServingStatus }) {
  return (
    <dl className="serving-stats">
      <div>
        <dt title="Tabs serving now (loaded or loading) / the autoscaler's target (its bounds)">Pool / target</dt>
        <dd>
          <span data-testid="serving-pool">{serving.poolSize}</span>
          {` / ${serving.target} `}
          <span className="muted" data-testid="serving-bounds">{`(${serving.minTabs}–${serving.maxTabs})`}</span>
          {serving.panic && (
            <span className="pill pill-panic" data-testid="serving-panic" title="A burst outran the pool: the autoscaler scales up on the short window and does not scale down">
              panic
            </span>
          )}
        </dd>
      </div>
      <div>
        <dt title="Requests waiting for a tab">Queue</dt>
        <dd data-testid="serving-queue">{formatCount(serving.queueDepth)}</dd>
      </div>
      <div>
        <dt title="Requests answered with outputs">Served</dt>
        <dd data-testid="serving-served">{formatCount(serving.served)}</dd>
      </div>
      <div>
        <dt title="Requests answered with an error: 503 (full, or no tab), 504 (past the deadline), 500">Errors</dt>
        <dd className={serving.errors > 0 ? "struck" : undefined} data-testid="serving-errors">
          {formatCount(serving.errors)}
        </dd>
      </div>
    </dl>
  );
}

/** A chart with its heading and a one-line summary (full text in the tooltip when it is cut). */
function ChartBlock({ title, summary, children }: { title: string; summary: string | undefined; children: ReactNode }) {
  return (
    <div>
      <h3>{title}</h3>
      <p className="chart-summary" title={summary}>
        {summary ?? " "}
      </p>
      {children}
    </div>
  );
}

function ServingCharts({ serving }: { serving: ServingStatus }) {
  const series = servingSeries(serving.windows);
  const last = serving.windows.at(-1);
  const answered = lastAnsweredWindow(serving.windows);
  // Pool charts start at zero and reach the target, so a pool below its target shows as a gap to the line.
  const poolTop = Math.max(1, serving.target, ...serving.windows.map((w) => w.poolSize));
  const shared = { xAxis: CLOCK_AXIS, height: CHART_HEIGHT };
  return (
    <div className="serving-charts">
      <ChartBlock title="Pool size" summary={`${serving.poolSize} tab${serving.poolSize === 1 ? "" : "s"} now, target ${serving.target}`}>
        <LineChart {...shared} points={series.poolSize} formatY={(v) => `${v} tabs`} formatTick={countTick} color={POOL_COLOR} yDomain={[0, poolTop]} reference={{ y: serving.target, label: `target ${serving.target}` }} empty="The pool's size appears here, a point every few seconds." label="Serving pool size over time" />
      </ChartBlock>
      <ChartBlock title="Requests per second" summary={last && `${formatRps(last.offeredRps)} offered · ${formatRps(last.servedRps)} served req/s, last window`}>
        <LineChart {...shared} points={series.offeredRps} name="offered" more={[{ points: series.servedRps, color: SERVED_COLOR, name: "served" }]} formatY={(v) => `${formatRps(v)} req/s`} formatTick={formatRps} color={OFFERED_COLOR} empty={NO_REQUESTS} label="Offered and served requests per second" />
      </ChartBlock>
      <ChartBlock title="Latency" summary={answered && `p50 ${formatDuration(answered.p50Ms)} · p95 ${formatDuration(answered.p95Ms)} · p99 ${formatDuration(answered.p99Ms)}`}>
        <LineChart {...shared} points={series.p50Ms} name="p50" more={[{ points: series.p95Ms, color: LATENCY_COLORS.p95, name: "p95" }, { points: series.p99Ms, color: LATENCY_COLORS.p99, name: "p99" }]} formatY={formatDuration} color={LATENCY_COLORS.p50} empty="No request answered yet." label="Latency percentiles of answered requests" />
      </ChartBlock>
      <ChartBlock title="Queue and errors" summary={last && `${formatCount(last.queueDepth)} waiting · ${formatCount(last.errors)} errors, last window`}>
        <LineChart {...shared} points={series.queueDepth} name="queue depth" more={[{ points: series.errors, color: ERRORS_COLOR, name: "errors per window" }]} formatY={formatCount} formatTick={countTick} color={QUEUE_COLOR} empty={NO_REQUESTS} label="Queue depth and errors per window" />
      </ChartBlock>
    </div>
  );
}
