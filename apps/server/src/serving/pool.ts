import type http from "node:http";
import type { Duplex } from "node:stream";
import type { MemberRole } from "@crowdtrain/coordination";
import {
  decodeServeReply,
  encodeServeRequest,
  parseServeTabMessage,
  ServeMessageError,
  type ServeServerMessage,
  type ServingStatus,
} from "@crowdtrain/protocol";
import { Dispatcher, ServingStats, type AutoscalerConfig, type ServeRequest } from "@crowdtrain/serving";
import { WebSocketServer, type WebSocket } from "ws";
import { CLOSE_POLICY_VIOLATION, closeReason } from "../close-reason.ts";
import { HttpError } from "../http/errors.ts";
import { originRejection, refuseUpgrade, type OriginPolicy } from "../http/origin.ts";
import type { IdentityRegistry } from "../identity/registry.ts";
import type { UpgradeRoute } from "../upgrade.ts";
import { PoolScaler, type PoolMember } from "./scaler.ts";

/** The serve socket's path. */
export const SERVE_PATH = "/ws/serve";
/** A serving tab must say hello this soon after connecting. */
const SERVE_HELLO_TIMEOUT_MS = 10_000;
/** Largest message from a serving tab: a reply of MAX_PREDICT_ROWS rows of a few hundred classes. */
const MAX_TAB_MESSAGE_BYTES = 8 * 1024 * 1024;
/** How often deadlines are checked and stale requests offered to another tab. */
const PUMP_MS = 50;
/** How often the autoscaler looks at the load (it reasons in windows of seconds). */
const SCALE_EVERY_MS = 1_000;
/** The dashboard's and the bench's windows; a status carries the last SERVING_WINDOWS of them. */
export const SERVING_WINDOW_MS = 5_000;
const SERVING_WINDOWS = 72;
/**
 * A request is refused once the work queued ahead of it would take more than this share of its
 * deadline: capacities are estimates (the better of a tab's average and its latest measure), and a
 * queue admitted up to the whole deadline served, in bench:serve, requests that expired on the way.
 */
const SATURATED_SHARE_OF_DEADLINE = 0.5;
/** What a 503 tells the client to wait. */
const RETRY_AFTER_S = 1;

export type ServingOptions = {
  /** Rows a tab puts in one predict call at most (`--serve-max-batch`). Default 32. */
  maxBatch?: number;
  /** Longest a tab holds a request to fill a batch (`--serve-max-wait-ms`). Default 5. */
  maxWaitMs?: number;
  /** A request not answered within this is answered 504 (`--serve-deadline-ms`). Default 10 s. */
  deadlineMs?: number;
  /** Rows of unanswered requests at most; more is 503 (`--serve-max-pending-rows`). */
  maxPendingRows?: number;
  /** The autoscaler's settings (`--serve-min-tabs`, `--serve-max-tabs`, ...). */
  autoscaler?: Partial<AutoscalerConfig>;
};

export const DEFAULT_SERVING: Required<Omit<ServingOptions, "autoscaler" | "maxPendingRows">> = { maxBatch: 32, maxWaitMs: 5, deadlineMs: 10_000 };

export type { PoolMember } from "./scaler.ts";

export type ServingDeps = {
  /** Floats per input row and classes per output row: the model's. */
  features: number;
  classes: number;
  identities: IdentityRegistry;
  origins: OriginPolicy;
  /** The newest committed round whose state the server holds (what a tab loads). */
  storedRound: () => number;
  /** The job's members whose role is `role`, now. */
  withRole: (role: MemberRole) => readonly PoolMember[];
  /** One member of the job now, or undefined. */
  member: (peerId: string) => PoolMember | undefined;
  /** Trainers the job keeps however high the load (its minimum workers). */
  minTrainers: number;
  /** Asks the coordinator to move a member (it answers with `roleChanged`). */
  setRole: (peerId: string, role: MemberRole) => void;
  log: (kind: string, text: string) => void;
  now?: () => number;
};

export type Prediction = { outputs: Float32Array; modelRound: number; servedBy: string; ms: number };

type Waiting = { inputs: Float32Array; resolve: (p: Prediction) => void; reject: (e: HttpError) => void };

/**
 * The serving side of the server: the serve sockets of the serving tabs, the requests in flight
 * (a pure Dispatcher decides who answers what), admission (what is refused at once), the windows of
 * numbers the dashboard shows, and the clock of the autoscaler loop (scaler.ts, which moves members
 * between training and serving through the coordinator). Owns its sockets and timers; close()
 * answers every request still waiting (503) and ends them.
 */
export class ServePool {
  readonly route: UpgradeRoute;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_TAB_MESSAGE_BYTES });
  private readonly sockets = new Map<string, WebSocket>();
  private readonly dispatcher: Dispatcher;
  private readonly scaler: PoolScaler;
  private readonly stats = new ServingStats(SERVING_WINDOW_MS, SERVING_WINDOWS);
  private readonly waiting = new Map<number, Waiting>();
  private readonly settings: Required<Omit<ServingOptions, "autoscaler" | "maxPendingRows">>;
  private readonly now: () => number;
  private nextId = 1;
  private closed = false;
  private readonly pump: NodeJS.Timeout;
  private readonly scaleTimer: NodeJS.Timeout;

  constructor(
    private readonly deps: ServingDeps,
    options: ServingOptions = {},
  ) {
    this.settings = {
      maxBatch: options.maxBatch ?? DEFAULT_SERVING.maxBatch,
      maxWaitMs: options.maxWaitMs ?? DEFAULT_SERVING.maxWaitMs,
      deadlineMs: options.deadlineMs ?? DEFAULT_SERVING.deadlineMs,
    };
    this.now = deps.now ?? Date.now;
    this.dispatcher = new Dispatcher(options.maxPendingRows === undefined ? {} : { maxPendingRows: options.maxPendingRows });
    this.scaler = new PoolScaler({ withRole: deps.withRole, member: deps.member, minTrainers: deps.minTrainers, setRole: deps.setRole, log: deps.log, dispatcher: this.dispatcher }, options.autoscaler);
    this.wss.on("connection", (ws: WebSocket) => this.accept(ws));
    this.route = { handle: (req, socket, head) => this.upgrade(req, socket, head), close: () => this.close() };
    this.pump = setInterval(() => this.tick(), PUMP_MS);
    this.scaleTimer = setInterval(() => this.scale(), SCALE_EVERY_MS);
  }

  get features(): number {
    return this.deps.features;
  }

  get classes(): number {
    return this.deps.classes;
  }

  /**
   * Why a request would be refused now, checked before its body is read (a refusal costs the server
   * next to nothing): stopping, no tab and none to move, or the pool saturated, where the work
   * already waiting would take the tabs longer than a request's deadline, so a new one would only
   * hold a connection to end in a 504 (judged only while requests queue behind the tabs). Counted
   * as an arrival and an error when it refuses.
   */
  refusal(): HttpError | undefined {
    const retry = { "Retry-After": String(RETRY_AFTER_S) };
    let refused: HttpError | undefined;
    if (this.closed) refused = new HttpError(503, "the server is stopping", retry);
    else if (this.dispatcher.serving === 0 && this.scaler.poolSize() === 0 && !this.scaler.canGrow()) {
      refused = new HttpError(503, "no tab serves the model and none can be moved from training: open a worker page with ?role=server, or raise --serve-max-tabs", retry);
    } else {
      // Only with a queue behind the tabs: what they hold at once they are already working on.
      const waitMs = this.dispatcher.queued === 0 ? undefined : this.estimatedWaitMs();
      const limitMs = this.settings.deadlineMs * SATURATED_SHARE_OF_DEADLINE;
      if (waitMs !== undefined && waitMs > limitMs) {
        const s = (waitMs / 1000).toFixed(1);
        refused = new HttpError(503, `the serving pool is saturated: the ${this.dispatcher.rowsPending} rows waiting take its tabs about ${s} s, more than ${limitMs} ms of the ${this.settings.deadlineMs} ms deadline; retry in ${RETRY_AFTER_S} s`, retry);
      }
    }
    if (refused !== undefined) {
      this.stats.arrived(this.now());
      this.scaler.arrived();
      this.stats.errored(this.now());
    }
    return refused;
  }

  /** Answers `rows` rows of float32 inputs; rejects with an HttpError (503 no tab or full, 504 past the deadline). */
  predict(inputs: Float32Array, rows: number): Promise<Prediction> {
    const refused = this.refusal();
    if (refused !== undefined) return Promise.reject(refused);
    const now = this.now();
    this.stats.arrived(now);
    this.scaler.arrived();
    const request: ServeRequest = { id: this.nextId++, rows, arrivedAt: now, deadline: now + this.settings.deadlineMs };
    if (this.dispatcher.submit(request) === "full") {
      return this.refuse(new HttpError(503, `the serving queue is full (${this.dispatcher.pending} requests waiting); retry in ${RETRY_AFTER_S} s`, { "Retry-After": String(RETRY_AFTER_S) }));
    }
    const answer = new Promise<Prediction>((resolve, reject) => this.waiting.set(request.id, { inputs, resolve, reject }));
    // A cold pool: decide now rather than at the next autoscaler tick.
    if (this.scaler.poolSize() === 0) this.scale();
    this.assign();
    return answer;
  }

  /** The coordinator moved a member (a `role-changed` effect). */
  roleChanged(peerId: string, role: MemberRole): void {
    this.scaler.roleChanged(peerId, role);
    // Back to training: no new requests; what it holds it may answer until its socket closes.
    if (role !== "server") this.dispatcher.drain(peerId);
  }

  /** A member left the job: its serve socket closes too (its identity is revoked). */
  departed(peerId: string): void {
    this.scaler.departed(peerId);
    this.sockets.get(peerId)?.terminate();
  }

  /** The server now holds committed `round`: serving tabs swap to it between batches. */
  modelStored(round: number): void {
    const message: ServeServerMessage = { type: "serve-model", round };
    const text = JSON.stringify(message);
    for (const ws of this.sockets.values()) if (ws.readyState === ws.OPEN) ws.send(text);
  }

  status(): ServingStatus {
    const views = this.dispatcher.views();
    const { decisions, ...pool } = this.scaler.status();
    return {
      ...pool,
      queueDepth: this.dispatcher.queued,
      served: this.stats.served,
      errors: this.stats.errors,
      tabs: views.map((t) => ({ id: t.id, ...(t.round === undefined ? {} : { round: t.round }), outstanding: t.outstanding, ...(t.capacityRps === undefined ? {} : { capacityRps: t.capacityRps }), dedicated: t.dedicated })),
      windows: [...this.stats.windows],
      decisions,
    };
  }

  /**
   * How long the rows waiting would take the serving tabs, at their measured capacities (a tab not
   * measured yet counts as the mean of those that are); undefined while none is measured. Each tab's
   * capacity is the better of its average and its latest measure: a refusal must be sure, and the
   * average still carries a warm-up's first slow predict (shaders compiling) for seconds.
   */
  private estimatedWaitMs(): number | undefined {
    const serving = this.dispatcher.views().filter((t) => t.round !== undefined && !t.draining);
    const measured = serving.flatMap((t) => (t.capacityRps === undefined ? [] : [Math.max(t.capacityRps, t.lastCapacityRps ?? 0)]));
    if (measured.length === 0) return undefined;
    const mean = measured.reduce((a, b) => a + b, 0) / measured.length;
    const capacity = mean * serving.length;
    return capacity > 0 ? (this.dispatcher.rowsPending / capacity) * 1000 : undefined;
  }

  private refuse(error: HttpError): Promise<Prediction> {
    this.stats.errored(this.now());
    return Promise.reject(error);
  }

  private tick(): void {
    const now = this.now();
    for (const request of this.dispatcher.expire(now)) {
      this.settle(request.id, undefined, new HttpError(504, `no serving tab answered within the ${this.settings.deadlineMs} ms deadline`));
    }
    this.assign();
    this.stats.roll(now, this.scaler.poolSize(), this.dispatcher.queued);
  }

  private scale(): void {
    if (!this.closed) this.scaler.scale(this.now());
  }

  private assign(): void {
    for (const { tab, request } of this.dispatcher.assign(this.now())) {
      const waiting = this.waiting.get(request.id);
      const ws = this.sockets.get(tab);
      if (waiting === undefined || ws === undefined || ws.readyState !== ws.OPEN) {
        // A socket that closed between its close event and now: the close requeues what it held.
        continue;
      }
      ws.send(encodeServeRequest(request.id, request.rows, waiting.inputs));
    }
  }

  private settle(id: number, prediction: Prediction | undefined, error?: HttpError): void {
    const waiting = this.waiting.get(id);
    if (waiting === undefined) return;
    this.waiting.delete(id);
    const now = this.now();
    if (prediction !== undefined) {
      this.stats.answered(now, prediction.ms);
      waiting.resolve(prediction);
    } else {
      this.stats.errored(now);
      waiting.reject(error ?? new HttpError(500, "the request failed"));
    }
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const refused = originRejection(req, this.deps.origins);
    if (refused !== undefined) return refuseUpgrade(socket, 403, refused);
    this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit("connection", ws));
  }

  private accept(ws: WebSocket): void {
    let peerId: string | undefined;
    const helloTimer = setTimeout(() => ws.close(CLOSE_POLICY_VIOLATION, closeReason(`no serve-hello within ${SERVE_HELLO_TIMEOUT_MS} ms`)), SERVE_HELLO_TIMEOUT_MS);
    const violation = (why: string): void => {
      this.deps.log("serving", `serve socket${peerId === undefined ? "" : ` of ${peerId}`} closed: ${why}`);
      ws.close(CLOSE_POLICY_VIOLATION, closeReason(why));
    };
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      try {
        if (peerId === undefined) {
          if (isBinary) throw new ServeMessageError("the first message must be serve-hello");
          peerId = this.hello(ws, data.toString());
          clearTimeout(helloTimer);
          return;
        }
        if (isBinary) this.onReply(peerId, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
        else this.onControl(peerId, data.toString());
      } catch (error) {
        if (!(error instanceof ServeMessageError)) throw error;
        violation(error.message);
      }
    });
    ws.on("close", () => {
      clearTimeout(helloTimer);
      if (peerId === undefined || this.sockets.get(peerId) !== ws) return;
      this.sockets.delete(peerId);
      // Whatever it held goes to another tab.
      this.dispatcher.removeTab(peerId, this.now());
      this.assign();
    });
    ws.on("error", (error) => this.deps.log("serving", `serve socket error: ${error.message}`));
  }

  /** Checks a serve-hello; returns the tab's peer id. */
  private hello(ws: WebSocket, raw: string): string {
    const message = parseServeTabMessage(raw);
    if (message.type !== "serve-hello") throw new ServeMessageError("the first message must be serve-hello");
    if (!this.deps.identities.checkSession(message.peerId, message.sessionToken)) throw new ServeMessageError("unknown peer id or session token");
    const member = this.deps.member(message.peerId);
    if (member?.role !== "server") throw new ServeMessageError(`${message.peerId} is not a serving member of the job`);
    if (this.sockets.has(message.peerId)) throw new ServeMessageError(`${message.peerId} already has a serve socket`);
    this.sockets.set(message.peerId, ws);
    const maxBatch = Math.min(message.maxBatch, this.settings.maxBatch);
    this.dispatcher.addTab(message.peerId, maxBatch, !this.scaler.movedHere(message.peerId));
    const welcome: ServeServerMessage = { type: "serve-welcome", features: this.deps.features, classes: this.deps.classes, round: this.deps.storedRound(), maxWaitMs: this.settings.maxWaitMs, maxBatch };
    ws.send(JSON.stringify(welcome));
    return message.peerId;
  }

  private onControl(peerId: string, raw: string): void {
    const message = parseServeTabMessage(raw);
    if (message.type !== "serve-loaded") throw new ServeMessageError(`unexpected ${message.type}`);
    this.dispatcher.loaded(peerId, message.round);
    this.assign();
  }

  private onReply(peerId: string, bytes: Uint8Array): void {
    const now = this.now();
    const reply = decodeServeReply(bytes, this.deps.classes, (id) => this.dispatcher.rowsSent(peerId, id));
    if (reply.kind === "error") {
      this.deps.log("serving", `${peerId} could not answer request ${reply.id}: ${reply.message}`);
      this.dispatcher.failed(peerId, reply.id, now);
      this.assign();
      return;
    }
    const request = this.dispatcher.reply(peerId, reply.id, now);
    this.assign();
    if (request === undefined) return;
    // The frame's buffer is the socket's: copy the outputs out before answering from them later.
    this.settle(request.id, { outputs: reply.outputs.slice(), modelRound: reply.round, servedBy: peerId, ms: now - request.arrivedAt });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.pump);
    clearInterval(this.scaleTimer);
    for (const request of this.dispatcher.drainAll()) this.settle(request.id, undefined, new HttpError(503, "the server is stopping", { "Retry-After": String(RETRY_AFTER_S) }));
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((done, fail) => this.wss.close((error) => (error ? fail(error) : done())));
  }
}
