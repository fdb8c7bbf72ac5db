import { AllReduceError, type AllReducer, type RoundResult } from "@crowdtrain/allreduce";
import {
  parseCoordinatorMessage,
  PROTOCOL_VERSION,
  type Backend,
  type CoordinatorMessage,
  type RoundTimings,
  type WorkerMessage,
} from "@crowdtrain/protocol";
import type { PeerTransport } from "@crowdtrain/p2p";
import type { Trainer } from "../trainer/api.ts";
import { connect, type Connection } from "./connection.ts";
import { fetchState, uploadState } from "./state-http.ts";
import { COMMITTED_HISTORY, initialStatus, type SessionStatus } from "./status.ts";

type RoundMessage = Extract<CoordinatorMessage, { type: "round" }>;

export type SessionDeps = {
  /** Server origin, e.g. http://127.0.0.1:8080 */
  origin: string;
  /** The coordinator's WebSocket URL; the session reconnects to it by itself. */
  socketUrl: string;
  trainer: Trainer;
  transport: PeerTransport;
  reducer: AllReducer;
  /** The backend the trainer chose (selectBackend ran before connecting). */
  backend: Backend;
  adapter?: string;
  name?: string;
  onStatus: (status: SessionStatus) => void;
};

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
  const { trainer, reducer, transport } = deps;
  const status = initialStatus();
  status.peerId = transport.self;
  status.backend = deps.backend;
  let queue: Promise<void> = Promise.resolve();
  const aborted = new Set<number>();
  let pending: { attempt: number; round: number; upload: boolean; timings: RoundTimings; startedAt: number } | undefined;
  let batchSize = 1;
  /** Highest attempt seen: sent in hello so a restarted coordinator continues above it. */
  let lastAttempt: number | undefined;
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
    resolveStopped(reason);
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
    const startedAt = performance.now();
    running = message.attempt;
    publish({ phase: "training", share: undefined });
    const grad = await trainer.computeGradient(message.lease).finally(() => (running = undefined));
    if (aborted.has(message.attempt)) return;
    running = message.attempt;
    send({ type: "phase", attempt: message.attempt, phase: "reducing" });
    const reduceStart = performance.now();
    let reduced: RoundResult;
    try {
      const result = await reducer.allReduce({
        round: message.attempt,
        ring: message.ring,
        gradient: grad.gradient,
        samples: grad.samples,
        frameBytes: message.frameBytes,
      });
      reduced = result;
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
    pending = { attempt: message.attempt, round: message.round, upload: message.upload, timings, startedAt };
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
      bytesSent: reduced.stats.bytesSent,
      bytesReceived: reduced.stats.bytesReceived,
    });
  };

  const handle = async (message: CoordinatorMessage): Promise<void> => {
    switch (message.type) {
      case "welcome": {
        publish({ phase: "syncing" });
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
        const { upload, round, timings, startedAt } = pending;
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
        if (upload) await uploadState(deps.origin, round, await trainer.exportState());
        return;
      }
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
    if (message.type === "round") lastAttempt = Math.max(lastAttempt ?? 0, message.attempt);
    if (message.type === "abort") {
      // Cut the running all-reduce short now; the queued handler then discards pending state.
      aborted.add(message.attempt);
      reducer.abortRound(message.attempt, `coordinator aborted attempt ${message.attempt}: ${message.reason}`);
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
      reducer.abortRound(attempt, reason);
    }
    const dropped = pending?.attempt;
    pending = undefined;
    if (dropped !== undefined) queue = queue.then(() => trainer.discard(dropped)).catch(fail);
    publish({ phase: "connecting", lastError: `${reason}; reconnecting in ${(retryInMs / 1000).toFixed(1)} s` });
  };

  const onOpen = (): void => {
    publish({ phase: "connecting" });
    send({ type: "hello", protocol: PROTOCOL_VERSION, peerId: transport.self, name: deps.name, backend: deps.backend, adapter: deps.adapter, lastAttempt });
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
