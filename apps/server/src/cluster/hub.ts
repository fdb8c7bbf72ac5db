import type http from "node:http";
import { Duplex } from "node:stream";
import type { CommittedRound, Coordinator, CoordinatorEffect, CoordinatorEvent } from "@crowdtrain/coordination";
import { parseWorkerMessage, PROTOCOL_VERSION, type ClusterEvent, type CoordinatorMessage, type Job, type WorkerMessage } from "@crowdtrain/protocol";
import { WebSocketServer, type WebSocket } from "ws";
import { tokenMatches } from "../admin/token.ts";
import type { ClientAddress } from "../http/client-address.ts";
import { originRejection, refuseUpgrade, type OriginPolicy } from "../http/origin.ts";
import type { BanList } from "../identity/bans.ts";
import type { IdentityRegistry } from "../identity/registry.ts";
import { CLOSE_POLICY_VIOLATION, closeReason } from "../close-reason.ts";
import type { UpgradeRoute } from "../upgrade.ts";
import { EventLog } from "./event-log.ts";
import { RateLimiter } from "./rate-limit.ts";
import { MessageEncoder } from "./encode.ts";

/** A socket must say hello this soon after connecting, or it is closed. */
const HELLO_TIMEOUT_MS = 10_000;
/** How often time is fed to the coordinator (round deadlines, join grace, accusation windows). */
const TICK_MS = 250;
/** Largest worker message: results and hellos are a few hundred bytes; leases go the other way. */
const MAX_WORKER_MESSAGE_BYTES = 16 * 1024;
const MIB = 2 ** 20;
/** RFC 6455 "try again later": the job is full or private, not a protocol violation. */
const CLOSE_TRY_LATER = 1013;
/**
 * Sockets are checked every half heartbeat timeout, at most this long apart (browsers answer pings
 * with pongs by themselves). Pings were 1,000 writes a second at 1,000 members: most of an idle
 * server's 80 ms of CPU a second (npm run bench:load).
 */
const MAX_HEARTBEAT_CHECK_MS = 2_000;
/** The shortest heartbeat timeout: checks every 250 ms at most. */
export const MIN_HEARTBEAT_TIMEOUT_MS = 500;
/** A worker whose socket has not answered a ping for this long is presumed gone (network cut, frozen tab). */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 4_000;
/** Members one job admits by default: far above what a ring of browser tabs can use, far below what hurts the server. */
export const DEFAULT_MAX_MEMBERS = 256;
/** New worker connections one address may open per second by default (reconnects back off well below this). */
export const DEFAULT_HELLOS_PER_SECOND = 5;
/** Messages one worker may send per second (a few per round); a flood is closed, not queued. */
const MESSAGES_PER_SECOND = 50;
/** The code ws gives the error when a message exceeds maxPayload (it closes the socket with 1009 itself). */
const WS_TOO_LARGE = "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH";

/**
 * Why a worker socket or its handshake was refused: a fixed set, so /metrics can count refusals
 * by it (the event log keeps the words; a label of free text would be a series per message).
 */
export const SOCKET_REJECTIONS = [
  "origin",
  "banned",
  "connection-rate",
  "hello-timeout",
  "message-rate",
  "too-large",
  "malformed",
  "protocol",
  "join-token",
  "full",
  "memory",
] as const;
export type SocketRejection = (typeof SOCKET_REJECTIONS)[number];

export type HubOptions = {
  identities: IdentityRegistry;
  origins: OriginPolicy;
  /** Who a request comes from (the socket's peer, or the client a trusted proxy names). */
  clientAddress: ClientAddress;
  /** Addresses of evicted members, refused at the handshake for a while. */
  bans: BanList;
  /** Required in every hello when set (`--join-token`): the job is private. */
  joinToken?: string | undefined;
  /** Bytes a trainer needs for the job: a hello lending less (`memoryMiB`) is refused, saying both. */
  trainerNeedsBytes?: number | undefined;
  maxMembers?: number;
  hellosPerSecond?: number;
  heartbeatTimeoutMs?: number;
  onCommitted?: (commit: CommittedRound) => void;
  /** Every event as it enters the event log (the server's log on stdout). */
  onEvent?: (event: ClusterEvent) => void;
  /** The open round was aborted, with the coordinator's fixed cause. */
  onAborted?: (effect: Extract<CoordinatorEffect, { type: "aborted" }>) => void;
  /** A socket or handshake was refused (each refusal once). */
  onRejected?: (reason: SocketRejection) => void;
  /** A spot check was settled. */
  onAudited?: (effect: Extract<CoordinatorEffect, { type: "audited" }>) => void;
  /** A failed spot check rolled the model back: the server commits the older state under the new round. */
  onRolledBack?: (effect: Extract<CoordinatorEffect, { type: "rolled-back" }>) => void;
  /** A member is gone (left or evicted). */
  onDeparted?: (effect: Extract<CoordinatorEffect, { type: "departed" }>) => void;
  /** A member's role changed (training <-> serving). */
  onRoleChanged?: (effect: Extract<CoordinatorEffect, { type: "role-changed" }>) => void;
  /** Called once after each event the coordinator handled, whatever it changed. */
  onChanged?: () => void;
};

/**
 * Carries the Coordinator's effects out over WebSockets: one socket per worker tab, keyed by the
 * peer id the server issued it at hello. Every inbound message is parsed by its schema and bounded
 * in size and rate; a bad one closes that socket with the reason, never the server. The socket's
 * close revokes the identity, which closes its PeerJS socket too.
 */
export class ClusterHub {
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WORKER_MESSAGE_BYTES });
  readonly log: EventLog;
  readonly route: UpgradeRoute;
  private readonly sockets = new Map<string, WebSocket>();
  /** When each socket was last heard from: a pong, or any message (both prove it alive). */
  private readonly lastHeard = new Map<WebSocket, number>();
  /** Serializes a round's plan once for all its members. */
  private readonly encoder = new MessageEncoder();
  /** close() was called: the coordinator's state is final, nothing more is dispatched. */
  private closing = false;
  private readonly hellos: RateLimiter;
  private readonly ticker: NodeJS.Timeout;
  private readonly heartbeat: NodeJS.Timeout;
  private readonly maxMembers: number;

  constructor(
    readonly coordinator: Coordinator,
    private readonly job: Job,
    private readonly options: HubOptions,
    private readonly now: () => number = Date.now,
  ) {
    this.log = new EventLog(undefined, options.onEvent);
    this.maxMembers = options.maxMembers ?? DEFAULT_MAX_MEMBERS;
    this.hellos = new RateLimiter(options.hellosPerSecond ?? DEFAULT_HELLOS_PER_SECOND, 1_000, now);
    this.wss.on("connection", (ws: WebSocket, req: http.IncomingMessage) => this.accept(ws, this.options.clientAddress(req)));
    this.route = { handle: (req, socket, head) => this.upgrade(req, socket, head), close: () => this.close() };
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    const timeoutMs = options.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
    if (!(timeoutMs >= MIN_HEARTBEAT_TIMEOUT_MS)) throw new RangeError(`heartbeatTimeoutMs must be at least ${MIN_HEARTBEAT_TIMEOUT_MS} ms, got ${timeoutMs}`);
    const checkMs = Math.min(MAX_HEARTBEAT_CHECK_MS, timeoutMs / 2);
    this.heartbeat = setInterval(() => this.checkHeartbeats(timeoutMs, checkMs), checkMs);
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const refused = originRejection(req, this.options.origins);
    if (refused !== undefined) {
      this.options.onRejected?.("origin");
      return refuseUpgrade(socket, 403, refused);
    }
    const address = this.options.clientAddress(req);
    const ban = this.options.bans.check(address);
    if (ban !== undefined) {
      this.options.onRejected?.("banned");
      return refuseUpgrade(socket, 403, `banned until ${new Date(ban.until).toISOString()}: ${ban.reason}`);
    }
    if (!this.hellos.take(address)) {
      this.options.onRejected?.("connection-rate");
      return refuseUpgrade(socket, 429, `too many connections from ${address}; retry in a second`);
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.wss.emit("connection", ws, req));
  }

  private tick(): void {
    this.hellos.prune();
    this.dispatch({ type: "tick", now: this.now() });
  }

  /**
   * Terminates sockets silent for longer than `timeoutMs` (their close event makes them leave), and
   * pings those silent for half a check interval or more: a socket that has just sent a message needs
   * no ping. A live quiet socket is so pinged within about one interval of last being heard, and its
   * pong has the rest of `timeoutMs` (two intervals) to come back, with room for late timers.
   * (Pinging only after a whole interval of silence let a quiet socket go unpinged for two
   * intervals and be terminated alive when the timers ran late.)
   */
  private checkHeartbeats(timeoutMs: number, checkMs: number): void {
    const now = this.now();
    for (const ws of this.wss.clients) {
      const last = this.lastHeard.get(ws) ?? now;
      if (now - last > timeoutMs) {
        this.log.add({ at: now, kind: "heartbeat", text: `a worker socket was silent for ${now - last} ms: closing it` });
        ws.terminate();
        continue;
      }
      if (now - last >= checkMs / 2) ws.ping();
    }
  }

  /** Feeds an event to the coordinator and carries out what it decides; tells onChanged once. */
  dispatch(event: CoordinatorEvent): void {
    // Stopping: the sockets close because the server does, not because members left. Feeding those
    // departures to the coordinator would fail pending spot checks and roll back rounds on the way out.
    if (this.closing) return;
    const effects = this.coordinator.handle(event);
    // Most events (a phase, all but the last result) decide nothing: 2,000 such a round at 1,000 members.
    if (effects.length > 0) {
      // A commit and the next round's message to the same member leave in one write, not two: at
      // 1,000 members the socket writes were the largest share of the server's CPU per round.
      const corked = new Set<WebSocket>();
      try {
        for (const effect of effects) this.carryOut(effect, corked);
      } finally {
        for (const ws of corked) tcpOf(ws)?.uncork();
      }
    }
    if (event.type !== "tick" || effects.length > 0) this.options.onChanged?.();
  }

  private accept(ws: WebSocket, address: string): void {
    let peerId: string | undefined;
    const messages = new RateLimiter(MESSAGES_PER_SECOND, 1_000, this.now);
    this.lastHeard.set(ws, this.now());
    ws.on("pong", () => this.lastHeard.set(ws, this.now()));
    const helloTimer = setTimeout(() => this.refuse(ws, peerId, "hello-timeout", `no hello within ${HELLO_TIMEOUT_MS} ms`), HELLO_TIMEOUT_MS);
    ws.on("message", (data, isBinary) => {
      this.lastHeard.set(ws, this.now());
      if (!messages.take("")) return this.refuse(ws, peerId, "message-rate", `more than ${MESSAGES_PER_SECOND} messages a second`);
      let message: WorkerMessage;
      try {
        if (isBinary) throw new Error("binary messages are not part of the protocol");
        message = parseWorkerMessage(data.toString());
      } catch (error) {
        return this.refuse(ws, peerId, "malformed", error instanceof Error ? error.message : String(error));
      }
      if (peerId !== undefined) return this.onMessage(peerId, message);
      if (message.type !== "hello") return this.refuse(ws, peerId, "protocol", "the first message must be hello");
      const problem = this.helloProblem(message);
      if (problem !== undefined) {
        // A stop first, so the worker shows the reason and does not reconnect; then the close.
        const stop: CoordinatorMessage = { type: "stop", reason: problem.reason };
        ws.send(JSON.stringify(stop));
        return this.refuse(ws, peerId, problem.why, problem.reason, problem.code);
      }
      clearTimeout(helloTimer);
      const identity = this.options.identities.issue(address);
      peerId = identity.peerId;
      this.sockets.set(peerId, ws);
      this.dispatch({ type: "join", peerId, name: message.name, backend: message.backend, adapter: message.adapter, role: message.role, memoryMiB: message.memoryMiB, now: this.now() });
      const welcome: CoordinatorMessage = { type: "welcome", protocol: PROTOCOL_VERSION, identity, job: this.job, round: this.coordinator.committed.round };
      ws.send(JSON.stringify(welcome));
    });
    ws.on("close", () => {
      clearTimeout(helloTimer);
      this.lastHeard.delete(ws);
      if (peerId === undefined || this.sockets.get(peerId) !== ws) return;
      this.sockets.delete(peerId);
      this.options.identities.revoke(peerId, "its connection to the coordinator closed");
      this.dispatch({ type: "leave", peerId, reason: "connection to the server closed", now: this.now() });
    });
    ws.on("error", (error) => {
      // ws has already closed the socket (1009); this is the only place the refusal shows.
      if ("code" in error && error.code === WS_TOO_LARGE) this.options.onRejected?.("too-large");
      this.log.add({ at: this.now(), kind: "socket-error", text: `${peerId ?? "unknown peer"}: ${error.message}` });
    });
  }

  private helloProblem(hello: Extract<WorkerMessage, { type: "hello" }>): { why: SocketRejection; reason: string; code: number } | undefined {
    const expected = this.options.joinToken;
    if (expected !== undefined && (hello.joinToken === undefined || !tokenMatches(expected, hello.joinToken))) {
      return { why: "join-token", reason: "this job is private: open the URL with the join token the operator shared (?join=...)", code: CLOSE_POLICY_VIOLATION };
    }
    if (this.sockets.size >= this.maxMembers) return { why: "full", reason: `the job is full (${this.maxMembers} members); try again later`, code: CLOSE_TRY_LATER };
    const needs = this.options.trainerNeedsBytes;
    // A serving tab holds the model for inference only: the trainer's figure does not apply to it.
    if (needs !== undefined && hello.memoryMiB !== undefined && (hello.role ?? "trainer") === "trainer" && hello.memoryMiB * MIB < needs) {
      const needed = Math.ceil(needs / MIB);
      return {
        why: "memory",
        reason: `this tab lends ${hello.memoryMiB} MiB (?memoryMiB=), but the job's model needs ${needed} MiB in one tab (weights, gradient, optimizer state and a batch's activations); open the page with ?memoryMiB=${needed} or more on a machine that has it`,
        code: CLOSE_POLICY_VIOLATION,
      };
    }
    return undefined;
  }

  /** Closes a socket for a violation, with a reason that fits a close frame, and logs it once. */
  private refuse(ws: WebSocket, peerId: string | undefined, why: SocketRejection, reason: string, code = CLOSE_POLICY_VIOLATION): void {
    if (ws.readyState !== ws.OPEN) return;
    this.options.onRejected?.(why);
    this.log.add({ at: this.now(), kind: "rejected", text: `${peerId ?? "unknown peer"}: ${reason.slice(0, 300)}` });
    ws.close(code, closeReason(reason));
  }

  private onMessage(peerId: string, message: WorkerMessage): void {
    const now = this.now();
    switch (message.type) {
      case "hello":
        this.refuse(this.sockets.get(peerId) as WebSocket, peerId, "protocol", "hello twice");
        return;
      case "ready":
        this.dispatch({ type: "ready", peerId, round: message.round, hash: message.hash, now });
        return;
      case "result": {
        const { type: _type, ...report } = message;
        this.dispatch({ type: "result", peerId, now, ...report });
        return;
      }
      case "phase":
        this.dispatch({ type: "phase", peerId, attempt: message.attempt, phase: message.phase, digest: message.digest, now });
        return;
      case "failed":
        this.dispatch({ type: "failed", peerId, attempt: message.attempt, code: message.code, suspect: message.suspect, message: message.message, now });
        return;
    }
  }

  /** Carries out one effect; a socket written to is corked and added to `corked` (uncorked by the caller). */
  private carryOut(effect: CoordinatorEffect, corked: Set<WebSocket>): void {
    switch (effect.type) {
      case "send": {
        const ws = this.sockets.get(effect.to);
        // A peer that vanished between the decision and now: its close event brings the leave.
        if (ws === undefined || ws.readyState !== ws.OPEN) return;
        if (!corked.has(ws)) {
          tcpOf(ws)?.cork();
          corked.add(ws);
        }
        ws.send(this.encoder.encode(effect.message, ws));
        return;
      }
      case "log":
        this.log.add({ at: this.now(), kind: effect.kind, text: effect.text });
        return;
      case "committed":
        this.options.onCommitted?.(effect.commit);
        return;
      case "aborted":
        this.options.onAborted?.(effect);
        return;
      case "departed":
        this.options.onDeparted?.(effect);
        return;
      case "disconnect": {
        // Evicted: the coordinator already forgot it, so its close event finds no member to remove.
        const address = this.options.identities.get(effect.peerId)?.address;
        if (address !== undefined && this.options.bans.ban(address, effect.peerId, effect.reason)) {
          this.log.add({ at: this.now(), kind: "banned", text: `${effect.peerId}'s address is banned: ${effect.reason}` });
        }
        const ws = this.sockets.get(effect.peerId);
        this.sockets.delete(effect.peerId);
        this.options.identities.revoke(effect.peerId, effect.reason);
        if (ws !== undefined && ws.readyState === ws.OPEN) ws.close(CLOSE_POLICY_VIOLATION, closeReason(effect.reason));
        return;
      }
      case "audited":
        this.options.onAudited?.(effect);
        return;
      case "rolled-back":
        this.options.onRolledBack?.(effect);
        return;
      case "role-changed":
        this.options.onRoleChanged?.(effect);
        return;
      case "epoch-finished":
        return;
    }
  }

  /** Worker sockets open now (members and sockets that have not said hello yet). */
  get connections(): number {
    return this.wss.clients.size;
  }

  /** Stops the ticker and the coordinator's input, then closes every worker socket. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.ticker);
    clearInterval(this.heartbeat);
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((done, fail) => this.wss.close((error) => (error ? fail(error) : done())));
  }
}

/**
 * The TCP (or TLS) socket under a WebSocket, to cork it: ws keeps it as `_socket` (set once the
 * connection is established, stable across ws 8) without exposing it in its types. Undefined if a
 * future ws hides it: sends then simply go out one write each.
 */
export function tcpOf(ws: WebSocket): Duplex | undefined {
  const socket = (ws as unknown as { _socket?: unknown })._socket;
  return socket instanceof Duplex ? socket : undefined;
}
