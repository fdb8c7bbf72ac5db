import { AllReduceError } from "@crowdtrain/allreduce";
import {
  parseCoordinatorMessage,
  PROTOCOL_VERSION,
  type Backend,
  type CoordinatorMessage,
  type Identity,
  type Job,
  type Plan,
  type RoundTimings,
  type WorkerMessage,
} from "@crowdtrain/protocol";
import { contributionDigest } from "@crowdtrain/training";
import type { Trainer } from "../trainer/api.ts";
import { connect, type Connection } from "./connection.ts";
import { fetchState, uploadContribution, uploadState } from "./state-http.ts";
import { COMMITTED_HISTORY, initialStatus, type SessionStatus } from "./status.ts";

type RoundMessage = Extract<CoordinatorMessage, { type: "round" }>;
/** Contributions kept for a spot check: the latest attempts' (an audit arrives right after its commit). */
const KEPT_CONTRIBUTIONS = 2;

export type SessionDeps = {
  /** Server origin, e.g. http://127.0.0.1:8080 */
  origin: string;
  /** The coordinator's WebSocket URL; the session reconnects to it by itself. */
  socketUrl: string;
  trainer: Trainer;
  /**
   * Registers with the signalling server under the identity the coordinator issued and returns
   * the all-reducer on it. Each connection to the coordinator gets a new identity, so a new link.
   */
  openLink: (identity: Identity, job: Job) => Promise<PeerLink>;
  /** The operator's join token, for a private job (`?join=` in the shared URL). */
  joinToken?: string | undefined;
  /** The backend the trainer chose (selectBackend ran before connecting). */
  backend: Backend;
  adapter?: string;
  name?: string;
  onStatus: (status: SessionStatus) => void;
};

/** One identity's presence on the peer network; the session closes it when the identity is replaced. */
export type PeerLink = {
  /** Averages the gradient with the plan's other members; rejects with AllReduceError. */
  reduce(args: ReduceArgs): Promise<Reduced>;
  abortRound(attempt: number, reason: string): void;
  close(): void;
};
export type ReduceArgs = { attempt: number; plan: Plan; gradient: Float32Array; samples: number; frameBytes: number };
/** The averaged gradient, what it cost, and (as a direct plan's shard owner) the contributors clipped. */
export type Reduced = { mean: Float32Array; bytesSent: number; bytesReceived: number; clipped?: string[] };

export interface Session {
  readonly status: SessionStatus;
  /** Resolves when the session has stopped (by the server, the volunteer, or an error). */
  readonly stopped: Promise<string>;
  stop(reason: string): void;
}

/**
 * One volunteer's participation: follows the coordinator's messages in order, computes on the
 * trainer, averages on the ring, and reports. Coordinator messages are handled one at a time; an
 * abort also cuts short the all-reduce of the attempt it names, at once. When the connection drops
 * the session keeps going: it voids what was in flight, reconnects, and syncs to the committed state.
 */
export function startSession(deps: SessionDeps): Session {
  const { trainer } = deps;
  const status = initialStatus();
  status.backend = deps.backend;
  /** Who the server says we are on this connection, and our line to the other members. */
  let identity: Identity | undefined;
  let link: PeerLink | undefined;
  let queue: Promise<void> = Promise.resolve();
  const aborted = new Set<number>();
  let pending: { attempt: number; round: number; timings: RoundTimings; startedAt: number } | undefined;
  let batchSize = 1;
  /** What we sent into recent all-reduces, by attempt: a spot check asks for it after the commit. */
  const contributions = new Map<number, Float32Array>();
  /** The attempt whose gradient or all-reduce is running now, if any. */
  let running: number | undefined;
  /** Bumped when the connection drops: queued messages of an older connection are not acted on. */
  let generation = 0;
  let resolveStopped!: (reason: string) => void;
  const stopped = new Promise<string>((resolve) => (resolveStopped = resolve));

  const publish = (patch: Partial<SessionStatus>): void => {
    Object.assign(status, patch);
    deps.onStatus({ ...status });
  };
  const send = (message: WorkerMessage): void => {
    // A message that cannot go out is not lost work: the coordinator aborts the attempt when we leave.
    connection.send(JSON.stringify(message));
  };
  const stop = (reason: string): void => {
    if (status.phase === "stopped") return;
    publish({ phase: "stopped", stopReason: reason });
    connection.close(reason);
    link?.close();
    link = undefined;
    resolveStopped(reason);
  };
  /**
   * Sends a state the server asked for. A failure is shown, not fatal: the server asks another
   * holder of the state when ours does not arrive (its check failed, or our connection changed).
   */
  const upload = async (round: number, exported: () => Promise<ArrayBuffer>): Promise<void> => {
    const me = identity;
    if (me === undefined) return;
    try {
      await uploadState(deps.origin, round, await exported(), { peerId: me.peerId, sessionToken: me.sessionToken });
    } catch (error) {
      console.error(`uploading the state of round ${round} failed:`, error);
      publish({ lastError: `uploading the state of round ${round} failed: ${error instanceof Error ? error.message : String(error)}` });
    }
  };
  const fail = (error: unknown): void => {
    publish({ lastError: String(error) });
    stop(`error: ${String(error)}`);
  };

  const syncTo = async (round: number): Promise<void> => {
    publish({ phase: "syncing" });
    const bytes = await fetchState(deps.origin, round);
    const state = await trainer.loadState(bytes);
    publish({ phase: "waiting", round: state.round });
    send({ type: "ready", round: state.round, hash: state.hash });
  };

  const runRound = async (message: RoundMessage): Promise<void> => {
    if (aborted.has(message.attempt)) return;
    const peers = link;
    if (peers === undefined) throw new Error(`round ${message.round} arrived before our peer link was open`);
    const startedAt = performance.now();
    running = message.attempt;
    publish({ phase: "training", share: undefined });
    const grad = await trainer.computeGradient(message.lease).finally(() => (running = undefined));
    if (aborted.has(message.attempt)) return;
    running = message.attempt;
    // Commit to what we are about to send: a spot check after the commit must match this digest.
    contributions.set(message.attempt, grad.gradient.slice());
    for (const attempt of contributions.keys()) if (contributions.size > KEPT_CONTRIBUTIONS) contributions.delete(attempt);
    send({ type: "phase", attempt: message.attempt, phase: "reducing", digest: contributionDigest(grad.gradient) });
    const reduceStart = performance.now();
    let reduced: Reduced;
    try {
      reduced = await peers.reduce({ attempt: message.attempt, plan: message.plan, gradient: grad.gradient, samples: grad.samples, frameBytes: message.frameBytes });
    } catch (error) {
      running = undefined;
      if (!(error instanceof AllReduceError)) throw error;
      publish({ phase: "waiting", lastError: error.message });
      if (error.code !== "aborted" || error.suspect !== undefined) {
        send({ type: "failed", attempt: message.attempt, code: error.code, suspect: error.suspect, message: error.message.slice(0, 480) });
      }
      return;
    }
    running = undefined;
    const allReduceMs = performance.now() - reduceStart;
    const update = await trainer.applyUpdate(message.attempt, reduced.mean);
    const timings = { computeMs: grad.computeMs, readbackMs: grad.readbackMs, allReduceMs, updateMs: update.updateMs };
    pending = { attempt: message.attempt, round: message.round, timings, startedAt };
    publish({
      lastTimings: timings,
      samplesPerSecond: grad.samples / (Math.max(grad.computeMs + grad.readbackMs, 1) / 1000),
      share: grad.samples / batchSize,
      samplesDone: status.samplesDone + grad.samples,
    });
    send({
      type: "result",
      attempt: message.attempt,
      hash: update.hash,
      samples: grad.samples,
      loss: grad.loss,
      timings,
      bytesSent: reduced.bytesSent,
      bytesReceived: reduced.bytesReceived,
      ...(reduced.clipped === undefined ? {} : { clipped: reduced.clipped }),
    });
    // The designated uploader sends its pending state at once: the server checks it before the
    // commit (a plan of one commits only then) and adopts it when the round commits with its hash.
    if (message.upload) await upload(message.round, () => trainer.exportPending(message.attempt, message.round));
  };

  const handle = async (message: CoordinatorMessage): Promise<void> => {
    switch (message.type) {
      case "welcome": {
        publish({ phase: "syncing", peerId: message.identity.peerId });
        link?.close();
        link = undefined;
        identity = message.identity;
        link = await deps.openLink(message.identity, message.job);
        batchSize = message.job.batchSize;
        await trainer.init({ job: message.job, datasetUrl: `${deps.origin}/data/${message.job.dataset}` });
        await syncTo(message.round);
        return;
      }
      case "round":
        await runRound(message);
        return;
      case "commit": {
        if (pending?.attempt !== message.attempt) return;
        const { round, timings, startedAt } = pending;
        pending = undefined;
        const state = await trainer.commit(message.attempt, message.round);
        if (state.hash !== message.hash) throw new Error(`committed hash ${message.hash} differs from ours ${state.hash}`);
        const split = { ...timings, round, uploadMs: state.uploadMs, roundMs: performance.now() - startedAt };
        publish({
          phase: "waiting",
          round,
          roundsDone: status.roundsDone + 1,
          committed: [...status.committed, [round, state.hash] as [number, string]].slice(-COMMITTED_HISTORY),
          rounds: [...status.rounds, split].slice(-COMMITTED_HISTORY),
        });
        return;
      }
      case "audit": {
        // A spot check of a committed round: send the contribution we committed to. A failure is
        // shown; the coordinator counts an audit nobody answered as failed.
        const contribution = contributions.get(message.attempt);
        const me = identity;
        if (contribution === undefined || me === undefined) {
          publish({ lastError: `spot check of round ${message.round}: no contribution of attempt ${message.attempt} kept` });
          return;
        }
        await uploadContribution(deps.origin, message.round, contribution, { peerId: me.peerId, sessionToken: me.sessionToken }).catch((error: unknown) => {
          console.error(`uploading the contribution to round ${message.round} failed:`, error);
          publish({ lastError: `spot check of round ${message.round}: ${error instanceof Error ? error.message : String(error)}` });
        });
        return;
      }
      case "upload":
        // The server lacks the committed state of this round (its uploader vanished): send ours.
        if (status.round === message.round) await upload(message.round, () => trainer.exportState());
        return;
      case "abort":
        if (pending?.attempt === message.attempt) pending = undefined;
        await trainer.discard(message.attempt);
        publish({ phase: "waiting", lastError: `round aborted: ${message.reason}` });
        return;
      case "sync":
        await syncTo(message.round);
        return;
      case "stop":
        stop(message.reason);
        return;
    }
  };

  const onMessage = (data: unknown): void => {
    let message: CoordinatorMessage;
    try {
      if (typeof data !== "string") throw new Error("binary message from the coordinator");
      message = parseCoordinatorMessage(data);
    } catch (error) {
      fail(error);
      return;
    }
    if (message.type === "abort") {
      // Cut the running all-reduce short now; the queued handler then discards pending state.
      aborted.add(message.attempt);
      link?.abortRound(message.attempt, `coordinator aborted attempt ${message.attempt}: ${message.reason}`);
    }
    const from = generation;
    queue = queue
      .then(() => {
        if (status.phase === "stopped") return undefined;
        // After a reconnect, rounds of the old connection were aborted by the coordinator when we left.
        if (from !== generation && message.type === "round") return undefined;
        return handle(message);
      })
      .catch(fail);
  };

  const onDown = (reason: string, retryInMs: number): void => {
    generation++;
    // Whatever was in flight is void: the coordinator aborted it when this connection dropped.
    for (const attempt of [running, pending?.attempt]) {
      if (attempt === undefined) continue;
      aborted.add(attempt);
      link?.abortRound(attempt, reason);
    }
    // The server revokes this connection's identity and its PeerJS registration: close our side of
    // it now (a PeerJS peer would otherwise keep trying to reconnect with a revoked id); the next
    // welcome brings a new identity and a new link.
    identity = undefined;
    link?.close();
    link = undefined;
    const dropped = pending?.attempt;
    pending = undefined;
    if (dropped !== undefined) queue = queue.then(() => trainer.discard(dropped)).catch(fail);
    publish({ phase: "connecting", lastError: `${reason}; reconnecting in ${(retryInMs / 1000).toFixed(1)} s` });
  };

  const onOpen = (): void => {
    publish({ phase: "connecting" });
    send({ type: "hello", protocol: PROTOCOL_VERSION, name: deps.name, backend: deps.backend, adapter: deps.adapter, joinToken: deps.joinToken });
  };

  const connection: Connection = connect(deps.socketUrl, { onOpen, onMessage, onDown });

  return {
    get status() {
      return { ...status };
    },
    stopped,
    stop,
  };
}
