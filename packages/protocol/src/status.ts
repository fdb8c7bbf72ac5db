import * as v from "valibot";
import { JobSchema } from "./job.ts";
import { BackendSchema, MessageError } from "./messages.ts";
import { PipelinePlanSchema } from "./pipeline.ts";

/**
 * What the server tells the dashboard (and tests): `GET /api/status`, and every `data:` of the
 * server-sent events at `/api/events`. Objects are not strict, so a newer server may add fields
 * without breaking an older dashboard; what is here is required and checked.
 */
const Count = v.pipe(v.number(), v.integer(), v.minValue(0));
const Ms = v.pipe(v.number(), v.minValue(0));
/** A loss or accuracy may be NaN (a round without samples, a diverged model); JSON writes NaN as null. */
const Real = v.pipe(
  v.nullable(v.number()),
  v.transform((x): number => x ?? Number.NaN),
);

/**
 * "training" = computing its gradient (or between phases), "reducing" = in the all-reduce,
 * "serving" = answering inference requests (role "server"), never in a round.
 */
export const PeerStateSchema = v.picklist(["joining", "ready", "training", "reducing", "serving", "gone"]);
export type PeerState = v.InferOutput<typeof PeerStateSchema>;

export const PeerStatusSchema = v.object({
  id: v.string(),
  /** Chosen by the volunteer: untrusted text, always rendered as text. */
  name: v.optional(v.string()),
  backend: BackendSchema,
  adapter: v.optional(v.string()),
  state: PeerStateSchema,
  /** Measured compute speed (exponential average), once the peer committed a round. */
  samplesPerSecond: v.optional(v.number()),
  /** Share of the global batch in its last lease, 0..1. */
  share: v.number(),
  lastRoundMs: v.optional(Ms),
  lastHash: v.optional(v.string()),
  bytesSent: Count,
  bytesReceived: Count,
  /** When a peer in state "gone" left (server clock, ms). */
  leftAt: v.optional(v.number()),
  /** Strikes in force (the coordinator evicts at its maximum); absent or 0 for a clean peer. */
  strikes: v.optional(Count),
  /** Why a peer in state "gone" left: its connection closed, or it was evicted and why. */
  leftBecause: v.optional(v.string()),
  /** What it does (absent: "trainer"). */
  role: v.optional(v.string()),
  /** Spot checks of its contributions that passed and that failed. */
  audits: v.optional(v.object({ passed: Count, failed: Count })),
});
export type PeerStatus = v.InferOutput<typeof PeerStatusSchema>;

/** One ring link of a committed round: what `from` sent to its right neighbour `to` during the all-reduce. */
export const RingLinkSchema = v.object({
  from: v.string(),
  to: v.string(),
  bytes: Count,
  ms: Ms,
  /** bytes / ms; absent when the all-reduce took no measurable time. */
  bytesPerSecond: v.optional(v.number()),
});
export type RingLink = v.InferOutput<typeof RingLinkSchema>;

/**
 * A ring of more members than a status carries (the server's STATUS_RING_MEMBERS): `ring` holds its
 * first members, `ringSize` the whole count, and `links` the slowest links only.
 */
export const LastRingSchema = v.object({ round: Count, ring: v.array(v.string()), ringSize: v.optional(Count), links: v.array(RingLinkSchema) });
export type LastRing = v.InferOutput<typeof LastRingSchema>;

export const OpenRoundStatusSchema = v.object({ round: Count, attempt: Count, ring: v.array(v.string()), ringSize: v.optional(Count), openedAt: v.number() });

export const RoundPointSchema = v.object({
  round: Count,
  epoch: Count,
  at: v.number(),
  loss: Real,
  samples: Count,
  ringSize: Count,
  /** The kind of the round's plan (absent in rounds recorded before plans had kinds other than ring and direct). */
  plan: v.optional(v.picklist(["ring", "torus", "groups", "direct"])),
  roundMs: Ms,
  /** Slowest member's split of the round, in ms. */
  computeMs: Ms,
  readbackMs: Ms,
  allReduceMs: Ms,
  updateMs: Ms,
  hash: v.string(),
});
export type RoundPoint = v.InferOutput<typeof RoundPointSchema>;

export const EvalPointSchema = v.object({ round: Count, accuracy: Real, loss: Real, ms: Ms });
export type EvalPoint = v.InferOutput<typeof EvalPointSchema>;

export const ClusterEventSchema = v.object({ at: v.number(), kind: v.string(), text: v.string() });
export type ClusterEvent = v.InferOutput<typeof ClusterEventSchema>;

export const CoverageSchema = v.object({ epoch: Count, samples: Count, usedOnce: Count, usedTwice: Count, unused: Count });

/** One spot check: whose contribution to which round, and what the server found. */
export const AuditRecordSchema = v.object({
  round: Count,
  peer: v.string(),
  at: v.number(),
  outcome: v.picklist(["passed", "failed", "inconclusive"]),
  /** ||claimed - recomputed|| / ||recomputed||, when the server recomputed it. */
  relativeError: v.optional(v.number()),
  detail: v.string(),
});
export type AuditRecord = v.InferOutput<typeof AuditRecordSchema>;

/** One window (the server's SERVING_WINDOW_MS) of the inference API, as the bench and the dashboard chart it. */
export const ServingWindowSchema = v.object({
  /** End of the window (server clock). */
  at: v.number(),
  /** Requests that arrived, per second (answered or not). */
  offeredRps: v.number(),
  /** Requests answered with outputs, per second. */
  servedRps: v.number(),
  /** Latency percentiles of the requests answered in the window (absent: none answered). */
  p50Ms: v.optional(Ms),
  p95Ms: v.optional(Ms),
  p99Ms: v.optional(Ms),
  /** Serving tabs at the window's end. */
  poolSize: Count,
  /** Requests waiting for a tab at the window's end. */
  queueDepth: Count,
  /** Requests answered with an error (503 full or no tab, 504 past the deadline, 500). */
  errors: Count,
});
export type ServingWindow = v.InferOutput<typeof ServingWindowSchema>;

/** A change of the serving pool's target, with the autoscaler's reason. */
export const ScaleDecisionSchema = v.object({ at: v.number(), from: Count, to: Count, panic: v.boolean(), reason: v.string() });
export type ScaleDecision = v.InferOutput<typeof ScaleDecisionSchema>;

export const ServingTabSchema = v.object({
  id: v.string(),
  /** Committed round whose weights it serves (absent until loaded). */
  round: v.optional(Count),
  /** Requests sent to it and not yet answered. */
  outstanding: Count,
  /** Rows per second of its busy time, measured from its replies. */
  capacityRps: v.optional(v.number()),
  /** Joined to serve (`?role=server`): the autoscaler never moves it to training. */
  dedicated: v.boolean(),
});

export const ServingStatusSchema = v.object({
  /** Tabs serving now (loaded or loading). */
  poolSize: Count,
  /** The autoscaler's target pool size. */
  target: Count,
  minTabs: Count,
  maxTabs: Count,
  panic: v.boolean(),
  queueDepth: Count,
  served: Count,
  errors: Count,
  tabs: v.array(ServingTabSchema),
  /** Recent windows, oldest first. */
  windows: v.array(ServingWindowSchema),
  /** Recent target changes, oldest first. */
  decisions: v.array(ScaleDecisionSchema),
});
export type ServingStatus = v.InferOutput<typeof ServingStatusSchema>;

export const TrainingStatusSchema = v.picklist(["waiting", "running", "paused", "done"]);
export type TrainingStatus = v.InferOutput<typeof TrainingStatusSchema>;

export const StatusSchema = v.object({
  /** Server clock when this status was built (ms since the epoch). */
  now: v.number(),
  job: JobSchema,
  status: TrainingStatusSchema,
  /** Ready workers needed before the first round opens. */
  minWorkers: Count,
  /** Last committed round. */
  round: Count,
  /** Current target number of rounds (the job's, or what the operator set); absent: epochs only. */
  targetRounds: v.optional(Count),
  epoch: Count,
  samplesSeen: Count,
  epochProgress: v.object({ used: Count, total: Count }),
  coverage: v.array(CoverageSchema),
  /** Ring of the round in progress (its first members, as openRound.ring); empty between rounds (see lastRing). */
  ring: v.array(v.string()),
  openRound: v.optional(OpenRoundStatusSchema),
  /** Ring of the last committed round with each link's measured throughput. */
  lastRing: v.optional(LastRingSchema),
  /**
   * Members in join order, then recently departed peers (state "gone"), newest departure first. A
   * large swarm's status carries only some rows (those needing attention; `peerTotals` counts all,
   * GET /api/peers pages through every row).
   */
  peers: v.array(PeerStatusSchema),
  peerTotals: v.optional(v.object({ live: Count, training: Count, gone: Count })),
  loss: v.array(v.tuple([Count, Real])),
  accuracy: v.array(EvalPointSchema),
  recentRounds: v.array(RoundPointSchema),
  events: v.array(ClusterEventSchema),
  stateRound: Count,
  /** Addresses banned now, after an eviction: who was evicted, why, until when (addresses not shown). */
  bans: v.optional(v.array(v.object({ peer: v.string(), reason: v.string(), until: v.number() }))),
  /** Recent spot checks, newest last, and the tolerance they were judged by. */
  audits: v.optional(v.object({ tolerance: v.number(), recent: v.array(AuditRecordSchema), passed: Count, failed: Count })),
  /** The inference API and its pool of serving tabs (absent: a server without serving). */
  serving: v.optional(ServingStatusSchema),
  /**
   * A pipeline job: the plan of the round in progress (absent between rounds) and of the last
   * committed one, with each stage's hash, which that stage's replicas all reported.
   */
  pipeline: v.optional(
    v.object({
      open: v.optional(PipelinePlanSchema),
      last: v.optional(
        v.object({
          round: Count,
          plan: PipelinePlanSchema,
          stageHashes: v.array(v.string()),
          /** Each stage's span and the time it computed in it, averaged over its replicas (absent: not reported). */
          stages: v.optional(v.array(v.object({ spanMs: Ms, busyMs: Ms }))),
          /** Mean idle share of a stage over its span: the measured bubble (absent: not reported). */
          bubble: v.optional(Real),
          /** GPipe's and 1F1B's (K−1)/(M+K−1) for the plan's K stages and M micro-batches. */
          bubbleTheory: Real,
        }),
      ),
    }),
  ),
});
export type Status = v.InferOutput<typeof StatusSchema>;

/**
 * Live, training and departed peers among `rows`: what a status's `peerTotals` holds (the server
 * counts every peer; a dashboard facing a server without the field counts the rows it got).
 */
export function peerTotals(rows: readonly Pick<PeerStatus, "state">[]): NonNullable<Status["peerTotals"]> {
  const totals = { live: 0, training: 0, gone: 0 };
  for (const row of rows) {
    if (row.state === "gone") totals.gone++;
    else totals.live++;
    if (row.state === "training" || row.state === "reducing") totals.training++;
  }
  return totals;
}

/** Parses an untrusted, JSON-decoded status; throws MessageError with every problem summarised. */
export function parseStatus(input: unknown): Status {
  const result = v.safeParse(StatusSchema, input);
  if (!result.success) throw new MessageError(`bad status: ${v.summarize(result.issues)}`);
  return result.output;
}
