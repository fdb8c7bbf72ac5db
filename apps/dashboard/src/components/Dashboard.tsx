import type { ReactNode } from "react";
import { peerTotals, roundSamples, type Status } from "@crowdtrain/protocol";
import type { FeedState } from "../feed.ts";
import { estimateEta, msPerRound } from "../logic/eta.ts";
import { describeAlgorithm, describeModel, describeOptimizer, formatClock, formatCount, formatDuration, formatLoss, formatPercent } from "../logic/format.ts";
import { ACCURACY_COLOR, LOSS_COLOR } from "./colors.ts";
import { AuditsPanel } from "./AuditsPanel.tsx";
import { EventLog } from "./EventLog.tsx";
import { LineChart } from "./LineChart.tsx";
import { PeersTable } from "./PeersTable.tsx";
import { PipelinePanel } from "./PipelinePanel.tsx";
import { RingGraph } from "./RingGraph.tsx";
import { ServingPanel } from "./ServingPanel.tsx";
import { Timeline } from "./Timeline.tsx";

export type DashboardProps = {
  feed: FeedState;
  /** This page's origin: volunteers open `${origin}/`. */
  origin: string;
  /** The operator panel (kept apart: it talks to the server). */
  controls: ReactNode;
};

/** The whole page, from the latest status. Pure rendering: the feed and the controls come in as props. */
export function Dashboard({ feed, origin, controls }: DashboardProps) {
  const { status, connection } = feed;
  return (
    <div className="app">
      <header className="top">
        <div className="brand">
          Crowdtrain <span className="muted">dashboard</span>
        </div>
        {status !== undefined && (
          <>
            <div className="job-name" data-testid="job-name">
              {status.job.name}
            </div>
            <span className={`pill pill-${status.status}`} data-testid="training-status">
              {status.status}
            </span>
          </>
        )}
        <span className={`pill conn-${connection}`} data-testid="connection">
          {connection === "live" ? "live" : connection === "connecting" ? "connecting…" : "reconnecting…"}
        </span>
        <div className="join-url">
          Volunteers join at <code data-testid="join-url">{origin}/</code>
        </div>
      </header>
      {connection === "reconnecting" && (
        <div className="banner banner-warn" role="status" data-testid="reconnecting">
          Lost the connection to the server: reconnecting…
          {feed.receivedAt !== undefined && ` Showing what it said at ${formatClock(feed.receivedAt)}.`}
        </div>
      )}
      {feed.problem !== undefined && (
        <div className="banner banner-error" role="alert">
          The server sent a status this dashboard cannot read: {feed.problem}
        </div>
      )}
      {status === undefined ? (
        <p className="muted loading">{connection === "connecting" ? "Connecting to the server…" : "Waiting for the server…"}</p>
      ) : (
        <Body status={status} origin={origin} controls={controls} />
      )}
    </div>
  );
}

function Body({ status, origin, controls }: { status: Status; origin: string; controls: ReactNode }) {
  // A large swarm's status carries only some rows; its totals count every peer.
  const totals = status.peerTotals ?? peerTotals(status.peers);
  const allRows = totals.live + totals.gone;
  const ring = status.ring.length > 0 ? status.ring : (status.lastRing?.ring ?? []);
  const ringRound = status.openRound?.round ?? status.lastRing?.round;
  const ringSize = status.ring.length > 0 ? status.openRound?.ringSize : status.lastRing?.ringSize;
  const firstLoss = status.loss.find(([, loss]) => Number.isFinite(loss));
  const lastLoss = status.loss.at(-1);
  const lastEval = status.accuracy.at(-1);
  return (
    <main className="grid">
      {totals.live === 0 && (
        <section className="card span-12 join-hint" data-testid="join-hint">
          <h2>No worker yet</h2>
          <p>
            To lend a GPU, open <a href={`${origin}/`}>{origin}/</a> in a browser (other machines: use this server&apos;s address) and press{" "}
            <strong>Start</strong>. Training begins when {status.minWorkers} worker{status.minWorkers === 1 ? " is" : "s are"} ready.
          </p>
        </section>
      )}
      <section className="tiles span-12">
        <Tile label="Round" testId="tile-round" value={`${status.round}${status.targetRounds === undefined ? "" : ` / ${status.targetRounds}`}`}>
          {status.openRound !== undefined ? `round ${status.openRound.round} in progress` : status.status === "waiting" ? `waiting for ${status.minWorkers} ready` : " "}
        </Tile>
        <Tile label="Epoch" testId="tile-epoch" value={`${Math.min(status.epoch + 1, status.job.epochs ?? Infinity)}${status.job.epochs === undefined ? "" : ` / ${status.job.epochs}`}`}>
          {`${formatPercent(status.epochProgress.total > 0 ? status.epochProgress.used / status.epochProgress.total : 0, 0)} of ${formatCount(status.epochProgress.total)} samples`}
        </Tile>
        <Tile label="Samples seen" testId="tile-samples" value={formatCount(status.samplesSeen)}>
          {`global batch ${status.job.batchSize}`}
        </Tile>
        <EtaTile status={status} />
        <Tile label="Training loss" testId="tile-loss" value={lastLoss === undefined ? "–" : formatLoss(lastLoss[1])}>
          {firstLoss === undefined ? "no round yet" : `from ${formatLoss(firstLoss[1])} at round ${firstLoss[0]}`}
        </Tile>
        <Tile label="Test accuracy" testId="tile-accuracy" value={lastEval === undefined ? "–" : formatPercent(lastEval.accuracy)}>
          {lastEval === undefined
            ? `first eval at round ${status.job.evalEveryRounds}`
            : `round ${lastEval.round}${status.job.targetAccuracy === undefined ? "" : ` · target ${formatPercent(status.job.targetAccuracy, 0)}`}`}
        </Tile>
        <Tile label="Peers" testId="tile-peers" value={String(totals.live)}>
          {`${totals.training} training${status.serving === undefined ? "" : ` · ${status.serving.poolSize} serving`}${totals.gone > 0 ? ` · ${totals.gone} gone` : ""}`}
        </Tile>
      </section>

      <section className="card span-5">
        <h2>
          Training loss <span className="muted">per round</span>
        </h2>
        <p className="chart-summary" data-testid="loss-summary">
          {firstLoss !== undefined && lastLoss !== undefined ? (
            <>
              <span data-testid="loss-first" data-round={firstLoss[0]}>
                {formatLoss(firstLoss[1])}
              </span>
              {` (round ${firstLoss[0]}) → `}
              <span data-testid="loss-last" data-round={lastLoss[0]}>
                {formatLoss(lastLoss[1])}
              </span>
              {` (round ${lastLoss[0]}) · ${status.loss.length} rounds`}
            </>
          ) : (
            " "
          )}
        </p>
        <LineChart points={status.loss} formatY={formatLoss} formatTick={(v) => String(Number(v.toPrecision(6)))} color={LOSS_COLOR} empty="The loss of each committed round appears here." label="Training loss per round" />
      </section>
      <section className="card span-4">
        <h2>
          Test accuracy <span className="muted">every {status.job.evalEveryRounds} rounds</span>
        </h2>
        <p className="chart-summary" data-testid="accuracy-summary">
          {lastEval === undefined ? " " : `${formatPercent(lastEval.accuracy)} at round ${lastEval.round} · test loss ${formatLoss(lastEval.loss)}`}
        </p>
        <LineChart
          points={status.accuracy.map((e) => [e.round, e.accuracy] as [number, number])}
          formatY={(v) => formatPercent(v, 0)}
          color={ACCURACY_COLOR}
          yDomain={[0, 1]}
          dots
          reference={status.job.targetAccuracy === undefined ? undefined : { y: status.job.targetAccuracy, label: `target ${formatPercent(status.job.targetAccuracy, 0)}` }}
          empty="Evaluations on the held-out set appear here."
          label="Test accuracy per evaluation"
        />
      </section>
      <section className="card span-3">
        <h2>Operator</h2>
        {controls}
      </section>

      <section className="card span-5 rows-2">
        <h2>
          Ring <span className="muted">all-reduce order and link throughput</span>
        </h2>
        <RingGraph ring={ring} round={ringRound} inProgress={status.openRound !== undefined} peers={status.peers} lastRing={status.lastRing} minWorkers={status.minWorkers} ringSize={ringSize} />
      </section>
      <section className="card span-7">
        <h2>
          Recent rounds <span className="muted">slowest peer&apos;s time in each phase</span>
        </h2>
        <Timeline rounds={status.recentRounds} />
      </section>
      <section className="card span-7">
        <h2>Events</h2>
        <EventLog events={status.events} peers={status.peers} />
      </section>

      {status.serving !== undefined && <ServingPanel serving={status.serving} peers={status.peers} />}
      {status.pipeline !== undefined && (
        <section className="card span-12" data-testid="pipeline-panel">
          <h2>
            Pipeline <span className="muted">replicas × stages: who holds which layers, and how busy each stage is</span>
          </h2>
          <PipelinePanel pipeline={status.pipeline} peers={status.peers} />
        </section>
      )}

      <section className="card span-12">
        <h2>
          Peers <span className="muted">{allRows}</span>
          {status.peers.length < allRows && (
            <span className="muted" data-testid="peers-partial">
              {" "}
              · showing the {status.peers.length} needing attention most (struck, failed checks, slowest) · every peer: <a href="/api/peers">/api/peers</a>
            </span>
          )}
        </h2>
        {status.peers.length === 0 ? <p className="muted empty">No peer has joined yet.</p> : <PeersTable peers={status.peers} ring={ring} lastRing={status.lastRing} />}
      </section>
      {status.audits !== undefined && (
        <section className="card span-12" data-testid="audits-panel">
          <h2>
            Spot checks <span className="muted">the server recomputes a peer&apos;s contribution and compares</span>
          </h2>
          <AuditsPanel audits={status.audits} peers={status.peers} />
        </section>
      )}

      <section className="card span-12">
        <h2>Job</h2>
        <JobFacts status={status} />
      </section>
    </main>
  );
}

function Tile({ label, value, testId, children }: { label: string; value: string; testId: string; children: ReactNode }) {
  return (
    <div className="tile" data-testid={testId}>
      <div className="tile-label">{label}</div>
      <div className="tile-value" title={value}>
        {value}
      </div>
      <div className="tile-sub muted" title={typeof children === "string" ? children : undefined}>
        {children}
      </div>
    </div>
  );
}

function EtaTile({ status }: { status: Status }) {
  const eta = estimateEta(status);
  const pace = msPerRound(status.recentRounds);
  const rounds = eta.kind === "done" ? 0 : eta.rounds;
  const value = eta.kind === "eta" ? formatDuration(eta.ms) : eta.kind === "done" ? "finished" : eta.kind === "paused" ? "paused" : "–";
  const sub =
    eta.kind === "done"
      ? "no rounds left"
      : `${rounds === undefined ? "no limit" : `${formatCount(rounds)} rounds left`}${pace === undefined ? "" : ` × ${formatDuration(pace)}`}`;
  return (
    <Tile label="ETA" testId="tile-eta" value={value}>
      {eta.kind === "unknown" && rounds !== undefined ? `${sub} · ${eta.why}` : sub}
    </Tile>
  );
}

function JobFacts({ status }: { status: Status }) {
  const { job } = status;
  const facts: [string, string][] = [
    ["Name", job.name],
    ["Model", describeModel(job.model)],
    ["Dataset", `${job.dataset} (${formatCount(status.epochProgress.total)} training samples)`],
    ["Optimizer", `${describeOptimizer(job.optimizer)}${job.algorithm.kind === "diloco" ? " (inner, reset each round)" : ""}`],
    ["Algorithm", describeAlgorithm(job)],
    ["Global batch", `${job.batchSize} samples per step, ${roundSamples(job)} per round, split by measured speed`],
    ["Stops after", [job.epochs === undefined ? undefined : `${job.epochs} epochs`, status.targetRounds === undefined ? undefined : `${status.targetRounds} rounds`].filter(Boolean).join(" or ")],
    ["Evaluation", `every ${job.evalEveryRounds} rounds`],
    ["Seed", String(job.seed)],
  ];
  return (
    <dl className="facts">
      {facts.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}
