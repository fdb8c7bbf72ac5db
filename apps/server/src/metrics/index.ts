import type { Member } from "@crowdtrain/coordination";
import type express from "express";
import type { EvalPoint } from "@crowdtrain/protocol";
import { CheckpointMetrics } from "./checkpoints.ts";
import { registerEvaluationGauges } from "./evaluation.ts";
import { registerPeerGauge } from "./peers.ts";
import { createRegistry } from "./registry.ts";
import { RejectionMetrics } from "./rejections.ts";
import { RoundMetrics } from "./rounds.ts";
import { metricsRoute } from "./route.ts";

/** What the service's metrics read at scrape time (the rest is pushed to them as it happens). */
export type MetricSources = {
  members: () => readonly Readonly<Member>[];
  committedRound: () => number;
  latestEval: () => EvalPoint | undefined;
};

/** The metrics of one training service: what it records into, and the /metrics handler that reads them. */
export type ServiceMetrics = {
  rounds: RoundMetrics;
  checkpoints: CheckpointMetrics;
  rejections: RejectionMetrics;
  route: express.RequestHandler;
};

export function createServiceMetrics(sources: MetricSources): ServiceMetrics {
  const registry = createRegistry();
  const registers = [registry];
  registerPeerGauge(registers, sources.members);
  registerEvaluationGauges(registers, sources.latestEval);
  return {
    rounds: new RoundMetrics(registers, sources.committedRound),
    checkpoints: new CheckpointMetrics(registers),
    rejections: new RejectionMetrics(registers),
    route: metricsRoute(registry),
  };
}
