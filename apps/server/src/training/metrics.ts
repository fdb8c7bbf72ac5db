import type { CommittedRound } from "@crowdtrain/coordination";
import { planMembers, type EvalPoint, type RoundPoint } from "@crowdtrain/protocol";

/** How many rounds of history to keep in memory (and in checkpoints). */
const HISTORY_LIMIT = 5_000;

/** Loss and accuracy history: the training curve the operator watches. */
export class Metrics {
  rounds: RoundPoint[] = [];
  evals: EvalPoint[] = [];
  samplesSeen = 0;

  addRound(commit: CommittedRound, at: number): RoundPoint {
    const reports = [...commit.reports.values()];
    const slowest = (pick: (r: (typeof reports)[number]) => number): number => Math.max(0, ...reports.map(pick));
    const point: RoundPoint = {
      round: commit.round,
      epoch: commit.epoch,
      at,
      loss: commit.loss,
      samples: commit.samples,
      ringSize: planMembers(commit.plan).length,
      plan: commit.plan.kind,
      roundMs: commit.roundMs,
      computeMs: slowest((r) => r.timings.computeMs),
      readbackMs: slowest((r) => r.timings.readbackMs),
      allReduceMs: slowest((r) => r.timings.allReduceMs),
      updateMs: slowest((r) => r.timings.updateMs),
      hash: commit.hash,
    };
    this.samplesSeen += commit.samples;
    this.rounds.push(point);
    if (this.rounds.length > HISTORY_LIMIT) this.rounds.splice(0, this.rounds.length - HISTORY_LIMIT);
    return point;
  }

  addEval(point: EvalPoint): void {
    this.evals.push(point);
    if (this.evals.length > HISTORY_LIMIT) this.evals.splice(0, this.evals.length - HISTORY_LIMIT);
  }
}
