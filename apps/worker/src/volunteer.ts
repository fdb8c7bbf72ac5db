import { createAllReducer, createDirectAllReducer, type Transport } from "@crowdtrain/allreduce";
import { createPeerTransport, fetchSignallingConfig, openPeer, type SignallingConfig } from "@crowdtrain/p2p";
import { planGrid, type Backend, type Codec, type Identity, type Job, type MemberRole } from "@crowdtrain/protocol";
import { startServingAgent, type ServingAgentStatus } from "./serving/agent.ts";
import { ActivationBridge } from "./session/activation-bridge.ts";
import { RestartBudget } from "./restart-budget.ts";
import { withTimeout } from "./wait.ts";
import { startSession, type PeerLink, type Session } from "./session/session.ts";
import { fetchState } from "./session/state-http.ts";
import type { SessionStatus } from "./session/status.ts";
import type { Trainer } from "./trainer/api.ts";
import { chooseTrainer } from "./trainer/choose.ts";
import type { WorkerPageStatus } from "./worker-api.ts";

export type VolunteerOptions = {
  backends: string[];
  forcePage: boolean;
  name: string | undefined;
  /** The operator's join token for a private job (`?join=` in the shared URL). */
  joinToken: string | undefined;
  /** "server": only serve inference requests (`?role=server`). Default "trainer". */
  role?: MemberRole | undefined;
  /** Memory the volunteer lends, in MiB (`?memoryMiB=`); undefined = not said. */
  memoryMiB?: number | undefined;
  onStatus: (status: Partial<SessionStatus> & { where?: string; restarts?: number }) => void;
  /** Wraps the chosen trainer (the lab's dishonest volunteer; the product page passes none). */
  decorateTrainer?: (trainer: Trainer) => Trainer;
  /** Wraps each peer link (the lab's false accuser; the product page passes none). */
  decorateLink?: (link: PeerLink) => PeerLink;
};

export interface Volunteer {
  status(): WorkerPageStatus;
  readonly stopped: Promise<string>;
  stop(reason: string): void;
}

/** The server's serve socket (apps/server/src/serving/pool.ts SERVE_PATH). */
const SERVE_SOCKET_PATH = "/ws/serve";
const KNOWN_BACKENDS: readonly string[] = ["webgpu", "webgl", "wasm", "cpu"];
/**
 * A shard owner reports a contributor as an outlier (the coordinator strikes one that most owners
 * report) only when it lay this many clipping radii away. Clipping alone is routine: tau is twice
 * the median distance, and with few members and non-identical leases an honest member crosses it
 * now and then (a CI run evicted an honest tab that way). A gradient scaled by 1e4 lies thousands
 * of radii away; what stays inside is bounded by the clipping anyway.
 */
const OUTLIER_TAUS = 4;

/**
 * A tab whose own trainer failed (a GPU device lost: seen in 2 of 4 runs of eight SwiftShader tabs)
 * starts over with a fresh trainer, a new identity and a sync, at most this often; the coordinator
 * sees a departure and a join, as for a closed and reopened tab. A fresh Web Worker trainer gets a
 * fresh GPU device; a page trainer re-selects its backend in the page's TF.js, which may fall back
 * to the next backend of the list.
 */
const MAX_TRAINER_RESTARTS = 3;
const TRAINER_RESTART_WINDOW_MS = 10 * 60_000;
/** A failed trainer's dispose (a page trainer on a lost device may never settle) is waited for this long. */
const TRAINER_DISPOSE_TIMEOUT_MS = 10_000;

/** One session with its own trainer: what a restart replaces whole (the restarts are the volunteer's to count). */
type Run = { session: Session; trainer: Trainer; status: () => Omit<WorkerPageStatus, "restarts"> };

/**
 * Starts lending this tab: picks the trainer and its backend, registers with the signalling server,
 * and follows the coordinator. Owns the trainer, the peer, the transport, the all-reducer and the
 * socket, and releases all of them when the session stops, whoever stops it. When the session
 * stops because this tab's trainer failed, it starts over with a fresh one (RestartBudget).
 */
export async function startVolunteer(options: VolunteerOptions): Promise<Volunteer> {
  options.onStatus({ phase: "starting" });
  let run = await startRun(options);
  const budget = new RestartBudget(MAX_TRAINER_RESTARTS, TRAINER_RESTART_WINDOW_MS);
  let restarts = 0;
  /** Between a failed run and its replacement: the old run's status is not this tab's any more. */
  let restarting = false;
  /** Set by stop(): a session stopped by the volunteer is never restarted, even mid-restart. */
  let stoppedWith: string | undefined;
  /** Why the tab stopped for good when the last run's own status says less (no restart left, or none could start). */
  let finalReason: string | undefined;
  const final = (reason: string, lastError?: string): string => {
    restarting = false;
    finalReason = reason;
    options.onStatus({ phase: "stopped", stopReason: reason, ...(lastError === undefined ? {} : { lastError }) });
    return reason;
  };
  const stopped = (async (): Promise<string> => {
    for (;;) {
      const end = await run.session.stopped;
      // A trainer that just failed may fail to dispose too (a lost device, a stuck worker): that
      // must not keep a fresh one from starting.
      await withTimeout(run.trainer.dispose(), TRAINER_DISPOSE_TIMEOUT_MS, "disposing the trainer").catch((error: unknown) => console.error("disposing the trainer (going on without it):", error));
      if (!end.restartable || stoppedWith !== undefined) return end.reason;
      console.warn(`the trainer failed (${restarts} fresh trainers so far): ${end.reason}`);
      if (!budget.take(performance.now())) return final(`${end.reason} (after ${MAX_TRAINER_RESTARTS} fresh trainers within ${TRAINER_RESTART_WINDOW_MS / 60_000} minutes)`);
      restarting = true;
      console.warn(`starting over with a fresh trainer (${restarts + 1} so far) after: ${end.reason}`);
      options.onStatus({ phase: "starting", restarts: restarts + 1, lastError: end.reason });
      try {
        run = await startRun(options);
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        return final(`could not start over after "${end.reason}": ${why}`, why);
      }
      restarts++;
      restarting = false;
      if (stoppedWith !== undefined) run.session.stop(stoppedWith);
    }
  })();
  return {
    status: () => ({
      ...run.status(),
      restarts,
      ...(restarting ? { phase: "starting" as const, peerId: undefined, stopReason: undefined } : {}),
      ...(finalReason === undefined ? {} : { phase: "stopped" as const, stopReason: finalReason }),
    }),
    stopped,
    stop: (reason) => {
      stoppedWith = reason;
      run.session.stop(reason);
    },
  };
}

/** Chooses a trainer (a fresh Web Worker, so a fresh GPU device) and starts a session with it. */
async function startRun(options: VolunteerOptions): Promise<Run> {
  const chosen = await chooseTrainer(options.backends, options.forcePage);
  const backend = chosen.report.backend;
  if (!KNOWN_BACKENDS.includes(backend)) {
    await chosen.trainer.dispose();
    throw new Error(`unknown backend ${backend}`);
  }
  const reasons = [...chosen.report.tried.map((t) => `${t.name}: ${t.ok ? "ok" : t.reason}`), chosen.why];
  options.onStatus({ backend, where: chosen.where, backendReasons: reasons });

  const trainer = options.decorateTrainer?.(chosen.trainer) ?? chosen.trainer;
  let serving: ServingAgentStatus | undefined;
  const session = startSession({
    origin: location.origin,
    socketUrl: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
    trainer,
    openLink: async (identity, job) => {
      // Asked per identity: its TURN credentials (if the operator runs TURN) are its own and expire.
      const link = await openLink(await fetchSignallingConfig(location.origin, identity), identity, job);
      return options.decorateLink?.(link) ?? link;
    },
    joinToken: options.joinToken,
    role: options.role,
    memoryMiB: options.memoryMiB,
    startServing: (identity) =>
      startServingAgent({
        socketUrl: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${SERVE_SOCKET_PATH}`,
        identity,
        heldRound: session.status.round,
        predict: (inputs, rows) => trainer.predict(inputs, rows),
        loadRound: async (round) => (await trainer.loadState(await fetchState(location.origin, round))).round,
        onStatus: (status) => (serving = status),
      }),
    backend: backend as Backend,
    name: options.name,
    onStatus: (status) => options.onStatus({ ...status, where: chosen.where }),
  });
  return {
    session,
    trainer: chosen.trainer,
    status: () => ({ ...session.status, backendReasons: reasons, where: chosen.where, ...(serving === undefined ? {} : { serving: { ...serving } }) }),
  };
}

/**
 * Registers under the issued identity and stacks transport and the job's all-reducer on it (a
 * ring for "mean", a direct plan for robust aggregation) on the transport's "allreduce" channel
 * only, so frames of other channels never reach it; close() frees all three.
 */
async function openLink(signalling: SignallingConfig, identity: Identity, job: Job): Promise<PeerLink> {
  const peer = await openPeer(signalling, identity);
  peer.on("error", (error) => console.error(`PeerJS error (${error.type}): ${error.message}`));
  // The signalling socket may drop; links already open keep working, new ones need it back.
  peer.on("disconnected", () => {
    if (!peer.destroyed) peer.reconnect();
  });
  const transport = createPeerTransport(peer);
  // Refused frames are dropped by the transport and never reach a round; they are logged here.
  transport.onViolation((from, violation) => console.error(`p2p: dropped a message from ${from} (${violation.kind}): ${violation.detail}`));
  const channel = transport.channel("allreduce");
  const reducers = job.aggregation === "mean" ? ringLink(channel, job.codec, job.topkFraction) : directLink(channel);
  // A pipeline job's activations travel on their own channel, between the link and the trainer.
  const bridge = new ActivationBridge(transport.channel("activations"));
  return {
    ...reducers,
    abortRound(attempt, reason) {
      reducers.abortRound(attempt, reason);
      bridge.abort(attempt, reason);
    },
    openStage: (attempt) => bridge.open(attempt),
    closeStage: () => bridge.close(),
    close() {
      bridge.dispose();
      reducers.close();
      transport.close();
      peer.destroy();
    },
  };
}

/** The all-reduce half of a PeerLink. */
type Reducers = Pick<PeerLink, "reduce" | "abortRound" | "close">;

/** A ring all-reducer speaking the job's codec (compressed contributions; topk returns its residual); it runs torus and groups plans too. */
function ringLink(transport: Transport, codec: Codec, topkFraction: number): Reducers {
  const reducer = createAllReducer({ transport });
  return {
    async reduce({ attempt, plan, gradient, samples, frameBytes }) {
      if (plan.kind === "torus" || plan.kind === "groups") {
        if (codec === "topk") throw new Error(`this job's topk codec runs on a ring, but the round came with a ${plan.kind} plan`);
        const { mean, stats } = await reducer.allReduceGrid({ attempt, ...planGrid(plan), gradient, samples, frameBytes, codec });
        return { mean, bytesSent: stats.bytesSent, bytesReceived: stats.bytesReceived };
      }
      if (plan.kind !== "ring") throw new Error(`this job averages over a ring, a torus or groups, but the round came with a ${plan.kind} plan`);
      const { mean, stats, residual } = await reducer.allReduce({ attempt, ring: [...plan.members], gradient, samples, frameBytes, codec, topkFraction });
      return { mean, bytesSent: stats.bytesSent, bytesReceived: stats.bytesReceived, ...(codec === "topk" && residual !== undefined ? { residual } : {}) };
    },
    abortRound: (attempt, reason) => reducer.abortRound(attempt, reason),
    close: () => reducer.close(),
  };
}

function directLink(transport: Transport): Reducers {
  const reducer = createDirectAllReducer({ transport });
  return {
    async reduce({ attempt, plan, gradient, frameBytes }) {
      if (plan.kind !== "direct") throw new Error(`this job aggregates robustly, but the round came with a ${plan.kind} plan`);
      const { mean, stats } = await reducer.allReduce({ attempt, plan, gradient, frameBytes });
      const { tau, contributors } = stats.ownShard;
      const clipped = tau === undefined ? [] : contributors.filter((c) => c.clipped && c.distance > OUTLIER_TAUS * tau).map((c) => c.peer);
      return { mean, bytesSent: stats.bytesSent, bytesReceived: stats.bytesReceived, clipped };
    },
    abortRound: (attempt, reason) => reducer.abortRound(attempt, reason),
    close: () => reducer.close(),
  };
}
