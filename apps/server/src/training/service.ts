import { join } from "node:path";
import express from "express";
import { Coordinator, type CommittedRound, type CoordinatorConfig } from "@crowdtrain/coordination";
import type { Job } from "@crowdtrain/protocol";
import { loadSplitFromDir, readManifest } from "@crowdtrain/training/node";
import { createAdminRouter } from "../admin/routes.ts";
import { generateAdminToken } from "../admin/token.ts";
import { ClusterHub } from "../cluster/hub.ts";
import { StatusStream } from "../dashboard/events.ts";
import { PeerRoster } from "../dashboard/roster.ts";
import { CheckpointStore } from "./checkpoint.ts";
import { Checkpointer } from "./checkpointer.ts";
import { Evaluator } from "./evaluator.ts";
import { Metrics } from "./metrics.ts";
import { ModelStore } from "./model-store.ts";
import { buildStatus, livePeers, type Status } from "./status.ts";

/** Largest model state accepted on upload (weights + optimizer state of a small model are a few MB). */
const MAX_STATE_BYTES = 256 * 1024 * 1024;

export type TrainingOptions = {
  job: Job;
  /** Directory holding one sub-directory per dataset (manifest.json + shards). */
  datasetsDir: string;
  minWorkers?: number;
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
};

/**
 * On shutdown, how long to wait for the state of the last committed round (its uploader sends it
 * just after the commit), so the final checkpoint holds it rather than the round before. Well
 * inside the CLI's 10 s shutdown bound.
 */
const FINAL_STATE_WAIT_MS = 3_000;

/** Default checkpoint interval: a kill -9 loses at most this many rounds. */
export const DEFAULT_CHECKPOINT_EVERY = 10;

export type TrainingService = {
  hub: ClusterHub;
  router: express.Router;
  status(): Status;
  /** The token the operator controls require (print it for the operator). */
  adminToken: string;
  /** Dashboards connected to /api/events. */
  stream: StatusStream;
  close(): Promise<void>;
};

/**
 * Everything about the one job this server runs: the coordinator and its WebSocket hub, the
 * committed model state, evaluation, metrics, and the HTTP routes that serve them.
 */
export async function startTraining(options: TrainingOptions): Promise<TrainingService> {
  const { job } = options;
  const datasetDir = join(options.datasetsDir, job.dataset);
  const manifest = await readManifest(datasetDir);
  const test = await loadSplitFromDir(datasetDir, "test", manifest);
  const checkpoints = options.dataDir === undefined ? undefined : new CheckpointStore(options.dataDir, job.name);
  const resumed = await checkpoints?.load(job);
  const store = new ModelStore(job, manifest, resumed?.state);
  const evaluator = new Evaluator(job, manifest, test);
  const metrics = new Metrics();
  if (resumed !== undefined) Object.assign(metrics, resumed.data.metrics);
  const config: CoordinatorConfig = {
    trainCount: manifest.train.count,
    batchSize: job.batchSize,
    seed: job.seed,
    maxRounds: job.rounds,
    maxEpochs: job.epochs,
    minWorkers: options.minWorkers ?? 1,
    roundDeadlineMs: options.roundDeadlineMs ?? 60_000,
    frameBytes: options.frameBytes ?? 64 * 1024,
    maxStrikes: 3,
    joinGraceMs: options.joinGraceMs ?? 5_000,
  };
  const coordinator = new Coordinator(config, resumed?.data.snapshot);
  const roster = new PeerRoster();
  let lastCommit: CommittedRound | undefined;
  const status = (): Status =>
    buildStatus({ job, coordinator, metrics, log: hub.log, storeRound: store.round, roster, lastCommit, now: Date.now(), isReducing: (id) => hub.isReducing(id) });
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
        }, resumed?.data.round);
  const hub = new ClusterHub(coordinator, job, {
    heartbeatTimeoutMs: options.heartbeatTimeoutMs,
    onCommitted: (commit: CommittedRound) => {
      metrics.addRound(commit, Date.now());
      lastCommit = commit;
      checkpointer?.remember(commit.round, coordinator.snapshot(), metrics.samplesSeen);
    },
    // Effects are carried out after the coordinator changed: remember every member's last row (so a
    // peer that leaves is shown as gone with its numbers), and tell the dashboards.
    onEffect: () => {
      roster.observe(livePeers(coordinator, job, (id) => hub.isReducing(id)), Date.now());
      stream.notify();
    },
  });
  const adminToken = options.adminToken ?? generateAdminToken();
  if (resumed !== undefined) {
    hub.log.add({ at: Date.now(), kind: "checkpoint", text: `resumed from the checkpoint of round ${resumed.data.round} in ${checkpoints?.dir}` });
  }

  const router = express.Router();
  router.get("/api/status", (_req, res) => {
    res.json(status());
  });
  router.get("/api/events", stream.handle);
  router.use(
    createAdminRouter(adminToken, {
      state: () => coordinator.state,
      dispatch: (event) => hub.dispatch(event),
      hasEpochLimit: job.epochs !== undefined,
    }),
  );
  router.get("/api/state", async (req, res) => {
    const round = Number(req.query.round ?? coordinator.state.committedRound);
    if (!Number.isInteger(round) || round < 0) {
      res.status(400).type("text").send("round must be a non-negative integer");
      return;
    }
    const stored = await store.whenAtLeast(round);
    if (stored === undefined) {
      res.status(503).type("text").send(`the state of round ${round} has not been uploaded yet; retry`);
      return;
    }
    res.type("application/octet-stream").send(Buffer.from(stored.bytes.buffer, stored.bytes.byteOffset, stored.bytes.byteLength));
  });
  router.put("/api/state/:round", express.raw({ type: "application/octet-stream", limit: MAX_STATE_BYTES }), (req, res) => {
    const round = Number(req.params.round);
    const body = req.body as unknown;
    if (!Number.isInteger(round) || !(body instanceof Buffer)) {
      res.status(400).type("text").send("PUT /api/state/<round> with an application/octet-stream body");
      return;
    }
    const committed = metrics.hashOf(round);
    const problem = store.accept(round, committed, new Uint8Array(body.buffer, body.byteOffset, body.byteLength));
    if (problem !== undefined) {
      hub.log.add({ at: Date.now(), kind: "rejected", text: `state upload for round ${round}: ${problem}` });
      stream.notify();
      res.status(409).type("text").send(problem);
      return;
    }
    res.status(204).end();
    stream.notify();
    if (store.round === round) checkpointer?.onState(store.state, store.bytes, metrics);
    if (round % job.evalEveryRounds === 0 || coordinator.state.status === "done") evaluateRound(round);
  });
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
        (error: unknown) => res.status(500).type("text").send(`model export failed: ${String(error)}`),
      );
    };
  };
  router.get("/api/model/model.json", serveExport((res, files) => res.json(files.modelJson)));
  router.get("/api/model/weights.bin", serveExport((res, files) => res.type("application/octet-stream").send(Buffer.from(files.weights))));
  router.use(`/data/${job.dataset}`, express.static(datasetDir, { immutable: true, maxAge: "1h" }));

  return {
    hub,
    router,
    status,
    adminToken,
    stream,
    async close() {
      if (checkpointer !== undefined) {
        await store.whenAtLeast(coordinator.state.committedRound, FINAL_STATE_WAIT_MS);
        await checkpointer.flush(store.state, store.bytes, metrics);
      }
      stream.close();
      store.close();
      await hub.close();
      evaluator.dispose();
    },
  };
}
