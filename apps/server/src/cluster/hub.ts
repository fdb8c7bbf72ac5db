import {
  parseWorkerMessage,
  PROTOCOL_VERSION,
  type CoordinatorMessage,
  type Job,
  type WorkerMessage,
} from "@crowdtrain/protocol";
import type { Coordinator} from "@crowdtrain/coordination";
import { type CommittedRound, type CoordinatorEffect, type CoordinatorEvent } from "@crowdtrain/coordination";
import { WebSocketServer, type WebSocket } from "ws";
import { EventLog } from "./event-log.ts";

/** A socket must say hello this soon after connecting, or it is closed. */
const HELLO_TIMEOUT_MS = 10_000;
/** How often time is fed to the coordinator (round deadlines, join grace). */
const TICK_MS = 250;
/** Largest worker message: results and hellos are a few hundred bytes; leases go the other way. */
const MAX_WORKER_MESSAGE_BYTES = 64 * 1024;
/** WebSocket close code for a policy violation (RFC 6455). */
const CLOSE_POLICY = 1008;
/** How often every worker socket is pinged (browsers answer pings with pongs by themselves). */
const HEARTBEAT_INTERVAL_MS = 1_000;
/** A worker whose socket has not answered a ping for this long is presumed gone (network cut, frozen tab). */
export const DEFAULT_HEARTBEAT_TIMEOUT_MS = 4_000;

export type HubHooks = {
  onCommitted?: (commit: CommittedRound) => void;
  onEffect?: (effect: CoordinatorEffect) => void;
  heartbeatTimeoutMs?: number;
};

/**
 * Carries the Coordinator's effects out over WebSockets: one socket per worker tab, keyed by its
 * PeerJS id. Every inbound message is parsed by its schema; a bad one closes that socket with the
 * reason, never the server.
 */
export class ClusterHub {
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_WORKER_MESSAGE_BYTES });
  readonly log = new EventLog();
  private readonly sockets = new Map<string, WebSocket>();
  private readonly lastPong = new Map<WebSocket, number>();
  /** Last phase each worker reported for an attempt (display only). */
  private readonly phases = new Map<string, { attempt: number; phase: "computing" | "reducing" }>();
  private readonly ticker: NodeJS.Timeout;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    readonly coordinator: Coordinator,
    private readonly job: Job,
    private readonly hooks: HubHooks = {},
    private readonly now: () => number = Date.now,
  ) {
    this.wss.on("connection", (ws) => this.accept(ws));
    this.ticker = setInterval(() => this.dispatch({ type: "tick", now: this.now() }), TICK_MS);
    const timeoutMs = hooks.heartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS;
    if (!(timeoutMs > HEARTBEAT_INTERVAL_MS)) throw new RangeError(`heartbeatTimeoutMs must exceed the ${HEARTBEAT_INTERVAL_MS} ms ping interval`);
    this.heartbeat = setInterval(() => this.checkHeartbeats(timeoutMs), HEARTBEAT_INTERVAL_MS);
  }

  /** Pings every socket; terminates those silent for longer than `timeoutMs` (their close event makes them leave). */
  private checkHeartbeats(timeoutMs: number): void {
    const now = this.now();
    for (const ws of this.wss.clients) {
      const last = this.lastPong.get(ws) ?? now;
      if (now - last > timeoutMs) {
        this.log.add({ at: now, kind: "heartbeat", text: `a worker socket was silent for ${now - last} ms: closing it` });
        ws.terminate();
        continue;
      }
      ws.ping();
    }
  }

  /** Feeds an event to the coordinator and carries out what it decides. */
  dispatch(event: CoordinatorEvent): void {
    for (const effect of this.coordinator.handle(event)) this.carryOut(effect);
  }

  private accept(ws: WebSocket): void {
    let peerId: string | undefined;
    this.lastPong.set(ws, this.now());
    ws.on("pong", () => this.lastPong.set(ws, this.now()));
    const helloTimer = setTimeout(() => ws.close(CLOSE_POLICY, `no hello within ${HELLO_TIMEOUT_MS} ms`), HELLO_TIMEOUT_MS);
    ws.on("message", (data, isBinary) => {
      let message: WorkerMessage;
      try {
        if (isBinary) throw new Error("binary messages are not part of the protocol");
        message = parseWorkerMessage(data.toString());
      } catch (error) {
        this.log.add({ at: this.now(), kind: "rejected", text: `${peerId ?? "unknown peer"}: ${String(error)}` });
        ws.close(CLOSE_POLICY, String(error).slice(0, 120));
        return;
      }
      if (peerId === undefined) {
        if (message.type !== "hello") {
          ws.close(CLOSE_POLICY, "the first message must be hello");
          return;
        }
        if (this.sockets.has(message.peerId)) {
          ws.close(CLOSE_POLICY, `peer id ${message.peerId} is already connected`);
          return;
        }
        clearTimeout(helloTimer);
        peerId = message.peerId;
        this.sockets.set(peerId, ws);
        this.dispatch({ type: "join", peerId, name: message.name, backend: message.backend, adapter: message.adapter, lastAttempt: message.lastAttempt, now: this.now() });
        const welcome: CoordinatorMessage = { type: "welcome", protocol: PROTOCOL_VERSION, job: this.job, round: this.coordinator.state.committedRound };
        ws.send(JSON.stringify(welcome));
        return;
      }
      this.onMessage(peerId, message);
    });
    ws.on("close", () => {
      clearTimeout(helloTimer);
      this.lastPong.delete(ws);
      if (peerId === undefined || this.sockets.get(peerId) !== ws) return;
      this.sockets.delete(peerId);
      this.phases.delete(peerId);
      this.dispatch({ type: "leave", peerId, reason: "connection to the server closed", now: this.now() });
    });
    ws.on("error", (error) => {
      this.log.add({ at: this.now(), kind: "socket-error", text: `${peerId ?? "unknown peer"}: ${error.message}` });
    });
  }

  private onMessage(peerId: string, message: WorkerMessage): void {
    const now = this.now();
    switch (message.type) {
      case "hello":
        this.sockets.get(peerId)?.close(CLOSE_POLICY, "hello twice");
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
        this.phases.set(peerId, { attempt: message.attempt, phase: message.phase });
        return;
      case "failed":
        this.dispatch({ type: "failed", peerId, attempt: message.attempt, code: message.code, suspect: message.suspect, message: message.message, now });
        return;
    }
  }

  private carryOut(effect: CoordinatorEffect): void {
    this.hooks.onEffect?.(effect);
    switch (effect.type) {
      case "send": {
        const ws = this.sockets.get(effect.to);
        // A peer that vanished between the decision and now: its close event brings the leave.
        if (ws !== undefined && ws.readyState === ws.OPEN) ws.send(JSON.stringify(effect.message));
        return;
      }
      case "log":
        this.log.add({ at: this.now(), kind: effect.kind, text: effect.text });
        return;
      case "committed":
        this.hooks.onCommitted?.(effect.commit);
        return;
      case "epoch-finished":
        return;
    }
  }

  /** True while `peerId` reported being in the all-reduce of the round now open. */
  isReducing(peerId: string): boolean {
    const reported = this.phases.get(peerId);
    return reported?.phase === "reducing" && reported.attempt === this.coordinator.state.current?.attempt;
  }

  /** Stops the ticker and closes every worker socket. */
  async close(): Promise<void> {
    clearInterval(this.ticker);
    clearInterval(this.heartbeat);
    for (const ws of this.wss.clients) ws.terminate();
    await new Promise<void>((done, fail) => this.wss.close((error) => (error ? fail(error) : done())));
  }
}
