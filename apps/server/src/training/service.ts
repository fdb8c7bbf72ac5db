import { randomInt } from "node:crypto";
import { join } from "node:path";
import express from "express";
import { Coordinator, type CommittedRound, type CoordinatorConfig } from "@crowdtrain/coordination";
import { committedOptimizer, roundSamples, type AuditRecord, type Job } from "@crowdtrain/protocol";
import { AUDIT_TOLERANCE, featureBytesOf, jobStateHasher, parameterCount, stateBytes } from "@crowdtrain/training";
import { loadSplitFromDir, nodeSha256, readManifest } from "@crowdtrain/training/node";
import { createAdminRouter } from "../admin/routes.ts";
import { generateAdminToken } from "../admin/token.ts";
import { ClusterHub } from "../cluster/hub.ts";
import { clientAddressOf, type ClientAddress } from "../http/client-address.ts";
import { HttpError, sendError } from "../http/errors.ts";
import type { OriginPolicy } from "../http/origin.ts";
import { parseCountQuery, parseRoundQuery } from "../http/query.ts";
import { BanList, DEFAULT_BAN_MS } from "../identity/bans.ts";
import { levelOfKind, type Logger } from "../log/logger.ts";
import type { IdentityRegistry } from "../identity/registry.ts";
import { StatusStream } from "../dashboard/events.ts";
import { PeerRoster } from "../dashboard/roster.ts";
import { createServiceMetrics } from "../metrics/index.ts";
import { Auditor } from "./auditor.ts";
import { CheckpointStore } from "./checkpoint.ts";
import { Checkpointer } from "./checkpointer.ts";
import { Evaluator } from "./evaluator.ts";
import { Metrics } from "./metrics.ts";
import { ModelStore } from "./model-store.ts";
import { DEFAULT_ROUND_DEADLINE_MS } from "./round-deadline.ts";
import { buildStatus, livePeers, memberRow, type Status } from "./status.ts";
import { buildSummary } from "./summary.ts";
import { createContributionHandler } from "./contributions.ts";
import { createUploadHandler } from "./uploads.ts";
import { ServePool, type ServingOptions } from "../serving/pool.ts";
import { predictRoute } from "../serving/predict-route.ts";
import { parallelismRefusal, pipelineCoordination, stageParts, trainerNeedsBytes } from "./parallelism.ts";

/**
 * Largest model state a job may have (weights + optimizer state): every joiner downloads it and
 * every round's uploader sends it, so a job beyond this is refused at start, not after it trained.
 */
export const MAX_STATE_BYTES = 64 * 1024 * 1024;

export type TrainingOptions = {
  job: Job;
  /** Directory holding one sub-directory per dataset (manifest.json + shards). */
  datasetsDir: string;
  minWorkers?: number;
  /** Default DEFAULT_ROUND_DEADLINE_MS; the CLI checks it against the workers' all-reduce timeouts (round-deadline.ts). */
  roundDeadlineMs?: number;
  joinGraceMs?: number;
  frameBytes?: number;
  /** Bearer token of the operator controls (/api/admin/...). Default: a fresh random 128-bit token. */
  adminToken?: string;
  /** Where checkpoints live; the job resumes from the latest one found there. None: no checkpoints. */
  dataDir?: string;
  /** Checkpoint every this many committed rounds (and on close). */
  checkpointEveryRounds?: number;
  /** A worker socket silent (no pong) this long is dropped. */
  heartbeatTimeoutMs?: number;
  /** Every hello must carry this token (`--join-token`): the job is private. */
  joinToken?: string;
  /** Members the job admits at once (`--max-members`). */
  maxMembers?: number;
  /** New worker connections per address per second (`--hellos-per-second`). */
  hellosPerSecond?: number;
  /** How long an evicted member's address may not rejoin (`--ban-minutes`); 0: no address bans. */
  banMs?: number;
  /** Ban loopback addresses too (off: every local tab and a reverse proxy share one); for tests. */
  banLoopback?: boolean;
  /** The inference API and its autoscaled pool of serving tabs; false: no serving. Default: on, with its defaults (off for a pipeline job, whose tabs hold one stage each). */
  serving?: ServingOptions | false;
};

/** What the server shares with the job: who is who, and which pages may open sockets. */
export type TrainingDeps = {
  identities: IdentityRegistry;
  origins: OriginPolicy;
  /** Default: the socket's peer (no proxy trusted). */
  clientAddress?: ClientAddress;
  /** Where cluster events go besides the dashboard's event log. Default: nowhere. */
  logger?: Logger;
};

/**
 * On shutdown, how long to wait for the state of the last committed round (its uploader sends it
 * around the commit, or another holder is asked), so the final checkpoint holds it rather than the
 * round before. Well
 * inside the CLI's 10 s shutdown bound.
 */
const FINAL_STATE_WAIT_MS = 3_000;
/** A worker id as the registry issues them (`w-` and hex). */
const PEER_ID = /^w-[0-9a-f]{1,64}$/;
/** GET /api/peers: rows per page at most (and by default). */
export const PEERS_PAGE_MAX = 500;
/** GET /api/peers: no swarm is this large; a larger offset is a typo, answered 400. */
const MAX_PEERS_OFFSET = 1_000_000;

/** Departures and joins within this window are one re-plan (a mass disconnect is not N re-rings). */
const REPLAN_DELAY_MS = 200;
/** A strike is forgiven after this many committed rounds without a new one. */
const STRIKE_DECAY_ROUNDS = 20;
/**
 * An accusation must be corroborated within this window. Longer than the heartbeat timeout, so a
 * suspect that is really gone has its socket dropped (which confirms the accusation) in time.
 */
const ACCUSATION_WINDOW_MS = 10_000;
/** The server asks another holder for a committed state it still lacks after this long. */
const STATE_UPLOAD_TIMEOUT_MS = 15_000;

/**
 * Memory for the committed states a failed spot check can roll back across (and audits recompute
 * from): the lineage window is as many states as fit, between 4 and 32 rounds.
 */
const STATE_HISTORY_BYTES = 128 * 1024 * 1024;
const MAX_LINEAGE_ROUNDS = 32;
const MIN_LINEAGE_ROUNDS = 4;
/** Settled spot checks /api/status lists. */
const RECENT_AUDITS = 50;

/** Uniform [0, 1) from the OS's cryptographic source: volunteers cannot predict who is audited. */
const secureRandom = (): number => randomInt(0, 2 ** 47) / 2 ** 47;

/** Default checkpoint interval: a kill -9 loses at most this many rounds. */
export const DEFAULT_CHECKPOINT_EVERY = 10;

export type TrainingService = {
  hub: ClusterHub;
  router: express.Router;
  status(): Status;
  /** The token the operator controls require (print it for the operator). */
  adminToken: string;
  /** The token workers join with (`?join=` in the shared URL), when the job is private. */
  joinToken: string | undefined;
  /** Dashboards connected to /api/events. */
  stream: StatusStream;
  /** The serving pool (its serve socket is at SERVE_PATH), unless serving is off. */
  serving: ServePool | undefined;
  close(): Promise<void>;
};

/**
 * Everything about the one job this server runs: the coordinator and its WebSocket hub, the
 * committed model state, evaluation, metrics, and the HTTP routes that serve them.
 */
export async function startTraining(options: TrainingOptions, deps: TrainingDeps): Promise<TrainingService> {
  const { job } = options;
  const datasetDir = join(options.datasetsDir, job.dataset);
  const manifest = await readManifest(datasetDir);
  const stateOptimizer = committedOptimizer(job).kind;
  const bytes = stateBytes(parameterCount(job.model, manifest.inputShape, manifest.classes), stateOptimizer);
  if (bytes > MAX_STATE_BYTES) {
    throw new Error(
      `job ${job.name}: its model state (weights and ${stateOptimizer} state) would be ${(bytes / 2 ** 20).toFixed(0)} MiB, ` +
        `above the ${MAX_STATE_BYTES / 2 ** 20} MiB every joiner downloads and every round uploads; make model.hidden / model.filters smaller`,
    );
  }
  const refusal = parallelismRefusal(job, manifest);
  if (refusal !== undefined) throw new Error(`job ${job.name}: ${refusal}`);
  const test = await loadSplitFromDir(datasetDir, "test", manifest);
  const checkpoints = options.dataDir === undefined ? undefined : new CheckpointStore(options.dataDir, job.name);
  const hashOf = jobStateHasher(job, manifest.inputShape, manifest.classes, nodeSha256);
  const pipelined = job.parallelism.stages > 1;
  const resumed = await checkpoints?.load(job, hashOf);
  const lineageRounds = Math.max(MIN_LINEAGE_ROUNDS, Math.min(MAX_LINEAGE_ROUNDS, Math.floor(STATE_HISTORY_BYTES / bytes)));
  // The store keeps one more state than the lineage, so the oldest round a rollback may pick is always held.
  const store = new ModelStore(job, manifest, resumed?.state, lineageRounds + 1);
  const evaluator = new Evaluator(job, manifest, test);
  const metrics = new Metrics();
  if (resumed !== undefined) Object.assign(metrics, resumed.data.metrics);
  const config: CoordinatorConfig = {
    trainCount: manifest.train.count,
    batchSize: roundSamples(job),
    seed: job.seed,
    maxRounds: job.rounds,
    maxEpochs: job.epochs,
    minWorkers: options.minWorkers ?? 1,
    // Round 0's hash, built here from the job's seed; a resumed snapshot brings its committed hash instead.
    initialHash: store.state.hash,
    aggregation: job.aggregation,
    codec: job.codec,
    topology: job.topology,
    roundDeadlineMs: options.roundDeadlineMs ?? DEFAULT_ROUND_DEADLINE_MS,
    frameBytes: options.frameBytes ?? 64 * 1024,
    maxStrikes: 3,
    strikeDecayRounds: STRIKE_DECAY_ROUNDS,
    joinGraceMs: options.joinGraceMs ?? 5_000,
    replanDelayMs: REPLAN_DELAY_MS,
    accusationWindowMs: ACCUSATION_WINDOW_MS,
    stateUploadTimeoutMs: STATE_UPLOAD_TIMEOUT_MS,
    // Spot checks recompute a member's whole-model gradient: a pipeline stage's is not covered yet.
    spotCheck: pipelined ? 0 : job.spotCheck,
    // A pipeline member computes its stage only once its neighbours' activations arrive: no lease ahead.
    ...(pipelined ? { leaseAhead: false, pipeline: pipelineCoordination(job, manifest) } : {}),
    lineageRounds,
    random: secureRandom,
  };
  const coordinator = new Coordinator(config, resumed?.data.snapshot);
  // GET /metrics: pushed to at commits, aborts, refusals and checkpoints; the rest is read at scrape time.
  const prometheus = createServiceMetrics({
    members: () => coordinator.state.members,
    committedRound: () => coordinator.committed.round,
    latestEval: () => metrics.evals.at(-1),
  });
  const roster = new PeerRoster();
  let lastCommit: CommittedRound | undefined;
  const audits = { tolerance: AUDIT_TOLERANCE, recent: [] as AuditRecord[], passed: 0, failed: 0 };
  const status = (): Status =>
    buildStatus({
      job,
      coordinator,
      metrics,
      log: hub.log,
      storeRound: store.round,
      roster,
      lastCommit,
      now: Date.now(),
      isReducing: (id) => coordinator.isReducing(id),
      bans: bans.active(),
      audits,
      serving: serving?.status(),
    });
  const stream = new StatusStream(status);
  const evaluateRound = (round: number): void => {
    if (store.round !== round) return;
    evaluator.evaluate(store.state).then(
      (point) => {
        metrics.addEval(point);
        hub.log.add({ at: Date.now(), kind: "eval", text: `round ${point.round}: test accuracy ${(point.accuracy * 100).toFixed(1)}%` });
        stream.notify();
      },
      (error: unknown) => {
        hub.log.add({ at: Date.now(), kind: "error", text: `evaluating round ${round} failed: ${String(error)}` });
        stream.notify();
      },
    );
  };
  const checkpointer =
    checkpoints === undefined
      ? undefined
      : new Checkpointer(checkpoints, job, options.checkpointEveryRounds ?? DEFAULT_CHECKPOINT_EVERY, (kind, text) => {
          hub.log.add({ at: Date.now(), kind, text });
          stream.notify();
        }, resumed?.data.round, (write) => prometheus.checkpoints.onWrite(write));
  const onAdopted = (state: { round: number }): void => {
    stream.notify();
    if (store.round === state.round) {
      serving?.modelStored(state.round);
      checkpointer?.onState(store.state, store.bytes, metrics);
    }
    if (state.round % job.evalEveryRounds === 0 || coordinator.done) evaluateRound(state.round);
  };
  const uploads = createUploadHandler({
    coordinator,
    identities: deps.identities,
    store,
    hashOf,
    stagePart: stageParts(job, manifest),
    dispatch: (event) => hub.dispatch(event),
    onAdopted,
    onRejected: (text) => hub.log.add({ at: Date.now(), kind: "rejected", text }),
    onRefused: (reason) => prometheus.rejections.onUpload(reason),
  });
  const bans = new BanList(options.banMs ?? DEFAULT_BAN_MS, Date.now, options.banLoopback ?? false);
  const hub = new ClusterHub(coordinator, job, {
    identities: deps.identities,
    origins: deps.origins,
    clientAddress: deps.clientAddress ?? clientAddressOf([]),
    onEvent: deps.logger === undefined ? undefined : (event) => deps.logger?.log({ ...event, level: levelOfKind(event.kind) }),
    bans,
    joinToken: options.joinToken,
    trainerNeedsBytes: trainerNeedsBytes(job, manifest),
    maxMembers: options.maxMembers,
    hellosPerSecond: options.hellosPerSecond,
    heartbeatTimeoutMs: options.heartbeatTimeoutMs,
    onCommitted: (commit: CommittedRound) => {
      metrics.addRound(commit, Date.now());
      prometheus.rounds.onCommitted(commit);
      lastCommit = commit;
      checkpointer?.remember(commit.round, coordinator.snapshot(), metrics.samplesSeen);
      // The uploader's state may have been checked before the commit: adopt it, outside this dispatch.
      queueMicrotask(() => uploads.onCommitted(commit));
    },
    onAborted: ({ cause }) => prometheus.rounds.onAborted(cause),
    onRejected: (reason) => prometheus.rejections.onSocket(reason),
    onAudited: ({ verdict }) => {
      if (verdict.outcome === "passed") audits.passed++;
      if (verdict.outcome === "failed") audits.failed++;
      audits.recent = [...audits.recent, { ...verdict, at: Date.now() }].slice(-RECENT_AUDITS);
    },
    onRolledBack: ({ round, to, hash }) => {
      // Outside this dispatch: adopting the state tells the coordinator, which is busy handling.
      queueMicrotask(() => {
        const state = store.rollBack(round, to);
        if (state === undefined || state.hash !== hash) {
          hub.dispatch({ type: "stop", reason: `rolling back to round ${to} failed: the server no longer holds its state`, now: Date.now() });
          return;
        }
        checkpointer?.remember(round, coordinator.snapshot(), metrics.samplesSeen);
        hub.dispatch({ type: "state-stored", round, now: Date.now() });
        onAdopted(state);
      });
    },
    // A departed member stays on the dashboard as "gone" with its last numbers for a while.
    onDeparted: ({ member, reason }) => {
      roster.depart(memberRow(member, job, false), Date.now(), reason);
      serving?.departed(member.peerId);
    },
    onRoleChanged: ({ peerId, role }) => serving?.roleChanged(peerId, role),
    onChanged: () => stream.notify(),
  });
  // A pipeline job's tabs hold one stage each, never the whole model a prediction needs.
  const serving =
    options.serving === false || pipelined
      ? undefined
      : new ServePool(
          {
            // One float per dataset feature (a sample's features are one byte each there).
            features: featureBytesOf(manifest.inputShape),
            classes: manifest.classes,
            identities: deps.identities,
            origins: deps.origins,
            storedRound: () => store.round,
            withRole: (role) => coordinator.membersWithRole(role),
            member: (peerId) => coordinator.member(peerId),
            minTrainers: options.minWorkers ?? 1,
            setRole: (peerId, role) => hub.dispatch({ type: "set-role", peerId, role, now: Date.now() }),
            log: (kind, text) => hub.log.add({ at: Date.now(), kind, text }),
          },
          options.serving,
        );
  const adminToken = options.adminToken ?? generateAdminToken();
  if (resumed !== undefined) {
    hub.log.add({ at: Date.now(), kind: "checkpoint", text: `resumed from the checkpoint of round ${resumed.data.round} in ${checkpoints?.dir}` });
  }

  const router = express.Router();
  router.get("/api/status", (_req, res) => {
    res.json(status());
  });
  // Every peer row, a page at a time: /api/status carries at most STATUS_PEER_ROWS of a large swarm.
  router.get("/api/peers", (req, res, next) => {
    let offset: number;
    let limit: number;
    try {
      offset = parseCountQuery("offset", req.query.offset, MAX_PEERS_OFFSET, 0);
      limit = parseCountQuery("limit", req.query.limit, PEERS_PAGE_MAX, PEERS_PAGE_MAX);
    } catch (error) {
      if (error instanceof HttpError) return sendError(res, error.status, error.message);
      return next(error);
    }
    const rows = roster.rows(livePeers(coordinator.state.members, job, (id) => coordinator.isReducing(id)), Date.now());
    res.json({ total: rows.length, offset, peers: rows.slice(offset, offset + limit) });
  });
  router.get("/api/summary", (req, res) => {
    const peer = req.query.peer;
    if (peer !== undefined && (typeof peer !== "string" || !PEER_ID.test(peer))) {
      sendError(res, 400, "GET /api/summary: peer must be one worker id like w-0123abcd");
      return;
    }
    res.json(buildSummary({ job, coordinator, metrics, isReducing: (id) => coordinator.isReducing(id) }, peer));
  });
  router.get("/api/events", stream.handle);
  if (serving !== undefined) router.post("/api/predict", predictRoute(serving));
  router.get("/metrics", prometheus.route);
  router.use(
    createAdminRouter(adminToken, {
      state: () => coordinator.state,
      dispatch: (event) => hub.dispatch(event),
      hasEpochLimit: job.epochs !== undefined,
    }),
  );
  router.get("/api/state", (req, res, next) => {
    let round: number;
    try {
      round = parseRoundQuery(req.query.round) ?? coordinator.committed.round;
    } catch (error) {
      if (error instanceof HttpError) return sendError(res, error.status, error.message);
      return next(error);
    }
    store.whenAtLeast(round).then((stored) => {
      if (stored === undefined) return sendError(res, 503, `the state of round ${round} has not been uploaded yet; retry`);
      res.type("application/octet-stream").send(Buffer.from(stored.bytes.buffer, stored.bytes.byteOffset, stored.bytes.byteLength));
    }, next);
  });
  router.put("/api/state/:round", uploads.route);
  const auditor = new Auditor(job, manifest, () => loadSplitFromDir(datasetDir, "train", manifest));
  router.put(
    "/api/contribution/:round",
    createContributionHandler({ coordinator, identities: deps.identities, store, auditor, dispatch: (event) => hub.dispatch(event) }),
  );
  // model.json and weights.bin are fetched as a pair: export each committed state once, for both.
  let exported: { round: number; files: ReturnType<Evaluator["export"]> } | undefined;
  const exportLatest = (): ReturnType<Evaluator["export"]> => {
    if (exported?.round !== store.round) {
      const files = evaluator.export(store.state);
      exported = { round: store.round, files };
      // A failed export is not cached: the next request tries again.
      files.catch(() => {
        if (exported?.files === files) exported = undefined;
      });
    }
    return exported.files;
  };
  // Express 4 does not catch a rejected async handler (Node would crash on it): answer 500 instead.
  const serveExport = (send: (res: express.Response, files: Awaited<ReturnType<Evaluator["export"]>>) => void): express.RequestHandler => {
    return (_req, res) => {
      exportLatest().then(
        (files) => send(res, files),
        (error: unknown) => sendError(res, 500, `model export failed: ${error instanceof Error ? error.message : String(error)}`),
      );
    };
  };
  router.get("/api/model/model.json", serveExport((res, files) => res.json(files.modelJson)));
  router.get("/api/model/weights.bin", serveExport((res, files) => res.type("application/octet-stream").send(Buffer.from(files.weights))));
  router.use(`/data/${job.dataset}`, express.static(datasetDir, { immutable: true, maxAge: "1h" }));
  if (pipelined) {
    // What a pipeline job does without, said where the operator looks, not silently dropped.
    const without = [job.spotCheck > 0 ? `spot checks (the job's spotCheck ${job.spotCheck}: the server recomputes whole-model gradients only)` : "", options.serving === false ? "" : "serving (no tab holds the whole model)"].filter((s) => s !== "");
    if (without.length > 0) hub.log.add({ at: Date.now(), kind: "config", text: `pipeline job of ${job.parallelism.stages} stages: runs without ${without.join(" and ")}` });
  }

  return {
    hub,
    router,
    status,
    adminToken,
    joinToken: options.joinToken,
    stream,
    serving,
    async close() {
      if (checkpointer !== undefined) {
        await store.whenAtLeast(coordinator.committed.round, FINAL_STATE_WAIT_MS);
        await checkpointer.flush(store.state, store.bytes, metrics);
      }
      stream.close();
      await serving?.close();
      store.close();
      await hub.close();
      await Promise.all([evaluator.close(), auditor.close()]);
    },
  };
}
