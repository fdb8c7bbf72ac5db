import { AllReduceError } from "@crowdtrain/allreduce";
import type { Backend, Identity, Job, MemberRole, Plan } from "@crowdtrain/protocol";
import type { Trainer } from "../trainer/api.ts";
import { connect, type Connection, type ConnectionEvents } from "./connection.ts";
import { SessionMachine, type SessionInput } from "./machine.ts";
import { fetchState, uploadContribution, uploadState, type UploadAuth } from "./state-http.ts";
import type { SessionStatus } from "./status.ts";
import type { Command, StageOfRound, Task, TaskResult } from "./tasks.ts";
import { withTimeout } from "../wait.ts";

/** Model state and contributions over HTTP (state-http.ts in the page; fakes in tests). */
export type StateHttp = {
  fetchState(round: number): Promise<ArrayBuffer>;
  uploadState(round: number, bytes: ArrayBuffer, auth: UploadAuth): Promise<void>;
  uploadContribution(round: number, gradient: Float32Array, auth: UploadAuth): Promise<void>;
};

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
  /** Memory the volunteer lends, in MiB (`?memoryMiB=`). */
  memoryMiB?: number | undefined;
  /** The backend the trainer chose (selectBackend ran before connecting). */
  backend: Backend;
  adapter?: string;
  name?: string;
  onStatus: (status: SessionStatus) => void;
  /** "server": join to serve inference requests only (`?role=server`). Default "trainer". */
  role?: MemberRole | undefined;
  /**
   * Starts serving with the trainer's weights under `identity` (the serving agent, serving/agent.ts);
   * the session stops it when the role changes back, the identity is dropped, or the session ends.
   * Absent: a "role: server" is refused (the tab cannot serve).
   */
  startServing?: (identity: Identity) => Serving;
  /** Ports, for tests: the coordinator connection (default: a reconnecting WebSocket), HTTP, the clock. */
  connect?: (events: ConnectionEvents) => Connection;
  http?: StateHttp;
  now?: () => number;
  /** How long a stopping session waits for its spot-check uploads in flight (default OWED_UPLOADS_TIMEOUT_MS). */
  owedUploadsTimeoutMs?: number;
  /** How long a session whose trainer failed after reporting waits for that attempt's outcome (default LEAVING_TIMEOUT_MS). */
  leavingTimeoutMs?: number;
};

/**
 * A stopping session keeps its connection this long at most for the spot-check uploads it has in
 * flight: the server fails the audits of a member that left without answering (and rolls back to
 * its last audited round), and past its own deadline (the coordinator's default audit timeout,
 * 30 s) an answer no longer counts.
 */
export const OWED_UPLOADS_TIMEOUT_MS = 30_000;

/**
 * How long a session whose trainer failed after reporting waits for that attempt's commit or abort
 * (and the spot check a commit may bring) before it stops anyway: the coordinator's default audit
 * timeout, past which an answer no longer counts.
 */
export const LEAVING_TIMEOUT_MS = 30_000;

/** A running serving agent: stop() closes its serve socket (what it held is retried elsewhere). */
export type Serving = { stop(): void };

/** One identity's presence on the peer network; the session closes it when the identity is replaced. */
export type PeerLink = {
  /** Averages the gradient with the plan's other members; rejects with AllReduceError. */
  reduce(args: ReduceArgs): Promise<Reduced>;
  /** Cuts the attempt's all-reduce (and its pipeline stage, if one runs) short. */
  abortRound(attempt: number, reason: string): void;
  /**
   * A pipeline round's activations (ActivationBridge): the port that carries them to and from the
   * trainer for `attempt`; closeStage ends the bridge's side when the stage is done.
   */
  openStage(attempt: number): MessagePort;
  closeStage(): void;
  close(): void;
};
export type ReduceArgs = { attempt: number; plan: Plan; gradient: Float32Array; samples: number; frameBytes: number };
/**
 * The averaged gradient, what it cost, (as a direct plan's shard owner) the contributors clipped,
 * and (with the topk codec) the residual our contribution left unsent.
 */
export type Reduced = { mean: Float32Array; bytesSent: number; bytesReceived: number; clipped?: string[]; residual?: Float32Array };

/** Why a session ended; `restartable`: this tab's trainer failed, so a fresh one may carry on (tasks.ts's stop command). */
export type SessionEnd = { reason: string; restartable: boolean };

export interface Session {
  readonly status: SessionStatus;
  /** Resolves when the session has stopped (by the server, the volunteer, or an error). */
  readonly stopped: Promise<SessionEnd>;
  stop(reason: string): void;
}

/**
 * Drives a SessionMachine (machine.ts: every decision) against the real world: the coordinator's
 * socket, state downloads and uploads, the trainer and the peer link. Owns the connection and the
 * link, and releases both when the session stops, whoever stops it.
 */
export function startSession(deps: SessionDeps): Session {
  const { trainer } = deps;
  const now = deps.now ?? (() => performance.now());
  const http = deps.http ?? httpPorts(deps.origin);
  const machine = new SessionMachine({ backend: deps.backend, name: deps.name, adapter: deps.adapter, joinToken: deps.joinToken, role: deps.role, memoryMiB: deps.memoryMiB });
  let link: PeerLink | undefined;
  let serving: Serving | undefined;
  const stopServing = (): void => {
    serving?.stop();
    serving = undefined;
  };
  /** Bumped whenever the link is closed, so a link opened for a dropped identity is not kept. */
  let linkEpoch = 0;
  let resolveStopped!: (end: SessionEnd) => void;
  const stopped = new Promise<SessionEnd>((resolve) => (resolveStopped = resolve));

  const feed = (input: SessionInput): void => {
    for (const command of machine.handle(input)) carryOut(command);
    deps.onStatus({ ...machine.status });
  };
  /** Drops the link; one broken with the device may throw on close, which is logged: it is dropped either way. */
  const closeLink = (): void => {
    linkEpoch++;
    const closing = link;
    link = undefined;
    try {
      closing?.close();
    } catch (error) {
      console.error("closing the peer link:", error);
    }
  };

  /** An upload running beside the tasks: its failure is logged and told to the machine. */
  const inBackground = (upload: Promise<void>, what: string): void => {
    upload.catch((error: unknown) => {
      console.error(`${what}:`, error);
      feed({ type: "upload-failed", error: `${what}: ${errorText(error)}`, now: now() });
    });
  };
  /** Bounds a `leaving` session's wait for its reported attempt's outcome; cleared when it stops. */
  let leavingTimer: ReturnType<typeof setTimeout> | undefined;

  /** Spot-check answers in flight; each leaves the set when it settles (its failure is inBackground's). */
  const owedUploads = new Set<Promise<void>>();
  const owe = (upload: Promise<void>): void => {
    owedUploads.add(upload);
    const settled = (): void => void owedUploads.delete(upload);
    upload.then(settled, settled);
  };

  /**
   * Ends the session: the peer link and serving go at once (the peers and the trainer are free);
   * the connection, whose close makes the server revoke this identity, stays until the spot checks
   * in flight have been answered (OWED_UPLOADS_TIMEOUT_MS at most). Whatever closing throws (a peer
   * link broken with the device), the session has stopped: its owner must hear it, or a tab that
   * could start over waits forever.
   */
  const finish = async (command: Extract<Command, { type: "stop" }>): Promise<void> => {
    clearTimeout(leavingTimer);
    try {
      stopServing();
    } catch (error) {
      console.error("stopping serving in the stopped session:", error);
    }
    closeLink();
    try {
      if (owedUploads.size > 0) {
        await withTimeout(Promise.allSettled(owedUploads), deps.owedUploadsTimeoutMs ?? OWED_UPLOADS_TIMEOUT_MS, "the spot-check uploads of a stopping session");
      }
    } catch (error) {
      console.error("the stopped session's spot-check uploads:", error);
    }
    try {
      connection?.close(command.reason);
    } catch (error) {
      console.error("closing the stopped session's connection:", error);
    } finally {
      resolveStopped({ reason: command.reason, restartable: command.restartable === true });
    }
  };

  const carryOut = (command: Command): void => {
    switch (command.type) {
      case "send":
        // A message that cannot go out is not lost work: the coordinator aborts the attempt when we leave.
        connection?.send(JSON.stringify(command.message));
        return;
      case "run":
        execute(command.task).then(
          (result) => feed({ type: "result", result, now: now() }),
          (error: unknown) => feed({ type: "result", result: { kind: "failed", task: command.task.kind, error: errorText(error), trainer: error instanceof TrainerFailure }, now: now() }),
        );
        return;
      case "upload-state":
        inBackground(http.uploadState(command.round, command.bytes, command.auth), `uploading the state of round ${command.round} failed`);
        return;
      case "upload-contribution": {
        const upload = http.uploadContribution(command.round, command.gradient, command.auth);
        owe(upload);
        inBackground(upload, `spot check of round ${command.round}`);
        return;
      }
      case "abort-reduce":
        link?.abortRound(command.attempt, command.reason);
        return;
      case "close-link":
        closeLink();
        return;
      case "serve":
        stopServing();
        if (deps.startServing === undefined) {
          feed({ type: "stop", reason: "asked to serve, but this page cannot serve", now: now() });
          return;
        }
        serving = deps.startServing(command.identity);
        return;
      case "stop-serving":
        stopServing();
        return;
      case "leaving": {
        const ms = deps.leavingTimeoutMs ?? LEAVING_TIMEOUT_MS;
        leavingTimer = setTimeout(() => {
          console.error(`attempt ${command.attempt}: neither its commit nor its abort came within ${ms} ms of the trainer's failure; stopping`);
          feed({ type: "leave-now", now: now() });
        }, ms);
        return;
      }
      case "stop":
        void finish(command);
        return;
    }
  };

  const execute = async (task: Task): Promise<TaskResult> => {
    switch (task.kind) {
      case "welcome": {
        closeLink();
        const epoch = linkEpoch;
        const opened = await deps.openLink(task.identity, task.job);
        if (epoch !== linkEpoch) opened.close(); // the identity was dropped while it opened
        else link = opened;
        await fromTrainer(trainer.init({ job: task.job, datasetUrl: `${deps.origin}/data/${task.job.dataset}` }));
        return sync(task.round);
      }
      case "sync":
        return sync(task.round);
      case "compute": {
        if (task.stage !== undefined) return computeStage(task, task.stage);
        const report = await fromTrainer(trainer.computeGradient(task.lease, task.ahead === true ? "pending" : "committed"));
        return { kind: "computed", attempt: task.attempt, report, ...(task.ahead === true ? { ahead: true } : {}) };
      }
      case "reduce":
        return reduce(task);
      case "update":
        return { kind: "updated", attempt: task.attempt, ...(await fromTrainer(trainer.applyUpdate(task.attempt, task.mean))) };
      case "commit": {
        const state = await fromTrainer(trainer.commit(task.attempt, task.round, task.hash));
        return { kind: "committed", attempt: task.attempt, round: task.round, hash: state.hash, uploadMs: state.uploadMs };
      }
      case "discard":
        await fromTrainer(trainer.discard(task.attempt));
        return { kind: "done" };
      case "export-state": {
        const bytes = await fromTrainer(task.attempt === undefined ? trainer.exportState() : trainer.exportPending(task.attempt, task.round));
        return { kind: "exported", round: task.round, bytes };
      }
    }
  };

  const sync = async (round: number): Promise<TaskResult> => {
    const state = await fromTrainer(trainer.loadState(await http.fetchState(round)));
    return { kind: "synced", round: state.round, hash: state.hash };
  };

  const computeStage = async (task: Extract<Task, { kind: "compute" }>, stage: StageOfRound): Promise<TaskResult> => {
    if (link === undefined) throw new Error(`attempt ${task.attempt} arrived before our peer link was open`);
    const port = link.openStage(task.attempt);
    try {
      const outcome = await fromTrainer(trainer.computeStage({ attempt: task.attempt, lease: task.lease, ...stage }, port));
      if (!outcome.ok) return { kind: "stage-failed", attempt: task.attempt, code: outcome.code, suspect: outcome.suspect, message: outcome.message };
      return { kind: "computed", attempt: task.attempt, report: outcome.report };
    } finally {
      link?.closeStage();
    }
  };

  const reduce = async (task: Extract<Task, { kind: "reduce" }>): Promise<TaskResult> => {
    if (link === undefined) throw new Error(`attempt ${task.attempt} arrived before our peer link was open`);
    try {
      const reduced = await link.reduce({ attempt: task.attempt, plan: task.plan, gradient: task.gradient, samples: task.samples, frameBytes: task.frameBytes });
      const { mean, bytesSent, bytesReceived, clipped, residual } = reduced;
      return { kind: "reduced", attempt: task.attempt, mean, bytesSent, bytesReceived, clipped, ...(residual === undefined ? {} : { residual }) };
    } catch (error) {
      if (!(error instanceof AllReduceError)) throw error;
      return { kind: "reduce-failed", attempt: task.attempt, code: error.code, suspect: error.suspect, message: error.message };
    }
  };

  const events: ConnectionEvents = {
    onOpen: () => feed({ type: "open", now: now() }),
    onMessage: (data) => feed({ type: "message", data, now: now() }),
    onDown: (reason, retryInMs) => feed({ type: "down", reason, retryInMs, now: now() }),
  };
  // Assigned before any event can arrive (a socket opens asynchronously).
  const connection: Connection | undefined = (deps.connect ?? ((e) => connect(deps.socketUrl, e)))(events);

  return {
    get status() {
      return { ...machine.status };
    },
    stopped,
    stop: (reason) => feed({ type: "stop", reason, now: now() }),
  };
}

function httpPorts(origin: string): StateHttp {
  return {
    fetchState: (round) => fetchState(origin, round),
    uploadState: (round, bytes, auth) => uploadState(origin, round, bytes, auth),
    uploadContribution: (round, gradient, auth) => uploadContribution(origin, round, gradient, auth),
  };
}

/** A trainer call failed (not the network or the peer link): the session may start over with a fresh trainer. */
class TrainerFailure extends Error {
  constructor(cause: unknown) {
    super(errorText(cause), { cause });
    this.name = "TrainerFailure";
  }
}

/** `call`, its failure marked as the trainer's. */
function fromTrainer<T>(call: Promise<T>): Promise<T> {
  return call.catch((error: unknown) => {
    throw new TrainerFailure(error);
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
