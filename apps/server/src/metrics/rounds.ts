import type { AbortCause, CommittedRound } from "@crowdtrain/coordination";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { METRIC_PREFIX } from "./registry.ts";

/**
 * Every abort cause, so each series exists (at 0) from the first scrape: a rate() over a series
 * that appears only at its first abort misses that abort. A Record, so TypeScript fails the build
 * when the coordinator gains a cause this list lacks.
 */
const ABORT_CAUSES: Record<AbortCause, true> = {
  departure: true,
  failure: true,
  deadline: true,
  "hash-split": true,
  "check-failed": true,
  "lease-mismatch": true,
  suspected: true,
  rollback: true,
  stopping: true,
};

/** A round of browser tabs takes from tens of milliseconds (a tiny MLP) to a minute (a thin link). */
const ROUND_BUCKETS_S = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** One phase of a round: a millisecond (a small update) up to most of a round. */
const PHASE_BUCKETS_S = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The phases a member's result reports, in ms, by the label value they get here. */
const PHASES = { compute: "computeMs", readback: "readbackMs", "all-reduce": "allReduceMs", update: "updateMs" } as const;

/** Rounds committed and aborted, how long they took and where the time went, and the bytes moved. */
export class RoundMetrics {
  private readonly committed: Counter;
  private readonly aborted: Counter<"cause">;
  private readonly duration: Histogram;
  private readonly phases: Histogram<"phase">;
  private readonly sent: Counter;
  private readonly received: Counter;

  constructor(registers: Registry[], committedRound: () => number) {
    this.committed = new Counter({ name: `${METRIC_PREFIX}rounds_committed_total`, help: "Rounds committed since the server started.", registers });
    this.aborted = new Counter({
      name: `${METRIC_PREFIX}rounds_aborted_total`,
      help: "Round attempts aborted since the server started, by cause.",
      labelNames: ["cause"] as const,
      registers,
    });
    for (const cause of Object.keys(ABORT_CAUSES)) this.aborted.inc({ cause }, 0);
    this.duration = new Histogram({
      name: `${METRIC_PREFIX}round_duration_seconds`,
      help: "Committed rounds: time from opening the round to its last report.",
      buckets: ROUND_BUCKETS_S,
      registers,
    });
    this.phases = new Histogram({
      name: `${METRIC_PREFIX}round_phase_seconds`,
      help: "Committed rounds: the slowest member's time in each phase (it sets the round's pace).",
      labelNames: ["phase"] as const,
      buckets: PHASE_BUCKETS_S,
      registers,
    });
    for (const phase of Object.keys(PHASES)) this.phases.zero({ phase });
    this.sent = new Counter({ name: `${METRIC_PREFIX}worker_sent_bytes_total`, help: "All-reduce bytes the members of committed rounds reported sending.", registers });
    this.received = new Counter({ name: `${METRIC_PREFIX}worker_received_bytes_total`, help: "All-reduce bytes the members of committed rounds reported receiving.", registers });
    // Read at scrape time: a rollback or a resumed checkpoint moves it without a commit here.
    new Gauge({
      name: `${METRIC_PREFIX}committed_round`,
      help: "Round number of the latest committed model state.",
      registers,
      collect() {
        this.set(committedRound());
      },
    });
  }

  onCommitted(commit: CommittedRound): void {
    this.committed.inc();
    this.duration.observe(commit.roundMs / 1000);
    const reports = [...commit.reports.values()];
    for (const [phase, field] of Object.entries(PHASES)) {
      this.phases.observe({ phase }, Math.max(0, ...reports.map((r) => r.timings[field])) / 1000);
    }
    for (const report of reports) {
      this.sent.inc(report.bytesSent);
      this.received.inc(report.bytesReceived);
    }
  }

  onAborted(cause: AbortCause): void {
    this.aborted.inc({ cause });
  }
}
