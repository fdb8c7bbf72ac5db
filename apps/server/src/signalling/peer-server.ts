import type http from "node:http";
import type { Duplex } from "node:stream";
import type express from "express";
import { ExpressPeerServer } from "peer";
import { WebSocketServer, type WebSocket } from "ws";
import { sendError } from "../http/errors.ts";
import type { IdentityRegistry } from "../identity/registry.ts";
import { originRejection, refuseUpgrade, type OriginPolicy } from "../http/origin.ts";
import type { TimerScope } from "../timer-scope.ts";
import type { UpgradeRoute } from "../upgrade.ts";
import { CLOSE_NORMAL, CLOSE_POLICY_VIOLATION } from "../close-reason.ts";
import { DEFAULT_SIGNALLING_LIMITS, FilteredSocket, type SignallingLimits } from "./filtered-socket.ts";

/** Where the PeerJS signalling server is mounted; browsers learn it from /api/config. */
export const PEER_PATH = "/peerjs";
/** Largest signalling message accepted: SDP offers with their candidates are a few KiB. */
export const PEER_MAX_MESSAGE_BYTES = 64 * 1024;
/**
 * How long `peer` keeps messages for an issued id that has not connected yet (an OFFER that races
 * its destination's own registration), and how often it sweeps them; expired ones are answered with
 * EXPIRE. These are peer's defaults, named here because the memory bound in SignallingLimits rests on them.
 */
export const PEER_QUEUE_EXPIRE_MS = 5_000;
export const PEER_QUEUE_SWEEP_MS = 1_000;
/** `peer` closes a socket that sent no HEARTBEAT (every 5 s from the client) for this long: 18 missed beats. */
export const PEER_ALIVE_TIMEOUT_MS = 90_000;
/** Most sockets `peer` registers at once; beyond it answers ERROR. Far above any job's worker count. */
export const PEER_MAX_CLIENTS = 5_000;

export type PeerServerDeps = {
  app: express.Express;
  server: http.Server;
  timers: TimerScope;
  identities: IdentityRegistry;
  origins: OriginPolicy;
  onLog: (text: string) => void;
  /** Per-socket limits; DEFAULT_SIGNALLING_LIMITS unless a test needs others. */
  limits?: Partial<SignallingLimits>;
  /** Monotonic clock in ms for the rate limits; performance.now by default. */
  now?: () => number;
};

/**
 * PeerJS signalling, mounted at PEER_PATH.
 *
 * - Only identities the server issued may register: the key, id and token of the handshake are
 *   checked against the registry, from an allowed origin, before `peer` sees the socket.
 * - `peer` never sees the real socket but a FilteredSocket, which passes on only PeerJS client
 *   messages (valibot schema) to issued ids, within per-socket rate limits, and closes a socket
 *   that sends anything else with 1008 and one log line.
 * - A revoked identity's signalling socket is closed at once; messages to it are dropped from then on.
 * - Peer's HTTP id service and peer list answer 404: ids come from the registry only.
 *
 * Owns: peer's WebSocketServer and the sockets it accepted, the revoke subscription; all freed by
 * route.close(). Peer's own timer loops belong to `deps.timers`.
 */
export function mountPeerServer(deps: PeerServerDeps): { path: string; route: UpgradeRoute } {
  const { app, server, timers, identities } = deps;
  const limits: SignallingLimits = { ...DEFAULT_SIGNALLING_LIMITS, ...deps.limits };
  const now = deps.now ?? (() => performance.now());
  let wss: WebSocketServer | undefined;
  let wsPath: string | undefined;
  const peerApp = ExpressPeerServer(server, {
    path: "/",
    key: identities.peerKey,
    allow_discovery: false,
    proxied: false,
    expire_timeout: PEER_QUEUE_EXPIRE_MS,
    cleanup_out_msgs: PEER_QUEUE_SWEEP_MS,
    alive_timeout: PEER_ALIVE_TIMEOUT_MS,
    concurrent_limit: PEER_MAX_CLIENTS,
    // Only our own pages talk to it: no CORS headers.
    corsOptions: { origin: false },
    // peer would attach a WebSocketServer to `server` itself, which answers 400 to upgrades on other
    // paths. Give it a detached one and route upgrades ourselves.
    createWebSocketServer: (wsOptions) => {
      wsPath = wsOptions.path;
      wss = new WebSocketServer({ noServer: true, maxPayload: PEER_MAX_MESSAGE_BYTES });
      return wss;
    },
  });
  // peer re-emits socket errors on the app; an EventEmitter 'error' without a listener would crash
  // us. Since messages are parsed before peer sees them, what is left here is transport errors
  // (an oversized or malformed frame): one line each, no stack.
  peerApp.on("error", (error: Error) => deps.onLog(`peerjs: ${error.message.replace(/[\r\n]+/g, " ")}`));
  // GET <key>/id hands out random ids and <key>/peers lists them (when discovery is on): neither has
  // a use here, where ids come only from the registry, so both are answered before peer's router.
  app.get([`${PEER_PATH}/:key/id`, `${PEER_PATH}/:key/peers`], (_req, res) => {
    sendError(res, 404, "PeerJS ids are issued by this server at hello, not handed out here");
  });
  // Mounting starts peer's WebSocket server and its timer loops; the scope lets close() stop them.
  timers.run(() => app.use(PEER_PATH, peerApp));
  if (wss === undefined || wsPath === undefined) throw new Error("peer did not create its WebSocket server on mount");
  const sockets = wss;

  /** The signalling socket of each registered id: what a revoke closes. */
  const live = new Map<string, FilteredSocket>();
  const unsubscribe = identities.onRevoke((peerId, reason) => {
    live.get(peerId)?.shut(CLOSE_POLICY_VIOLATION, `identity revoked: ${reason}`);
  });
  let closed = false;

  const accept = (ws: WebSocket, req: http.IncomingMessage, peerId: string): void => {
    // The identity may have been revoked while the handshake was answered.
    if (!identities.isIssued(peerId)) return ws.close(CLOSE_POLICY_VIOLATION, "identity revoked");
    // One socket per id, the newest (a client reconnecting before its old socket timed out): peer
    // would route to the new one but keep the old one open and unrouted, and, still knowing the id,
    // not send the new one its OPEN. Shutting the old one first makes peer forget the id.
    live.get(peerId)?.shut(CLOSE_NORMAL, "replaced by a newer signalling socket for this id");
    const filtered = new FilteredSocket(ws, { peerId, limits, now, isIssued: (id) => identities.isIssued(id), onLog: deps.onLog });
    live.set(peerId, filtered);
    filtered.on("close", () => {
      if (live.get(peerId) === filtered) live.delete(peerId);
    });
    sockets.emit("connection", filtered, req);
  };

  const route: UpgradeRoute = {
    handle(req: http.IncomingMessage, socket: Duplex, head: Buffer) {
      if (closed) return refuseUpgrade(socket, 503, "signalling is shutting down");
      const refused = originRejection(req, deps.origins);
      if (refused !== undefined) return refuseUpgrade(socket, 403, refused);
      const handshake = readHandshake(req.url ?? "/");
      if (!handshake.ok) return refuseUpgrade(socket, 400, handshake.problem);
      const { id, key, token } = handshake;
      if (!identities.checkPeer(id, key, token)) {
        return refuseUpgrade(socket, 403, "PeerJS accepts only ids this server issued, with their key and token");
      }
      sockets.handleUpgrade(req, socket, head, (ws) => accept(ws, req, id));
    },
    close() {
      closed = true;
      unsubscribe();
      for (const filtered of live.values()) filtered.dispose();
      live.clear();
      return closeAll(sockets);
    },
  };
  return { path: wsPath, route };
}

type Handshake = { ok: true; id: string; key: string; token: string } | { ok: false; problem: string };

/**
 * The PeerJS handshake's query. Each of id, key and token must appear exactly once: we read the
 * first value and peer the last (Object.fromEntries), so `?id=<issued>&token=<its token>&id=<any>&token=<any>`
 * would pass our check and register any id with peer.
 */
export function readHandshake(url: string): Handshake {
  const query = new URL(url, "http://x").searchParams;
  const values: Record<string, string> = {};
  for (const name of ["id", "key", "token"] as const) {
    const all = query.getAll(name);
    if (all.length !== 1) return { ok: false, problem: `the PeerJS handshake needs exactly one ${name}, got ${all.length}` };
    values[name] = all[0] ?? "";
  }
  return { ok: true, id: values.id ?? "", key: values.key ?? "", token: values.token ?? "" };
}

function closeAll(wss: WebSocketServer): Promise<void> {
  // A noServer WebSocketServer only reports 'close' once its clients are gone.
  for (const ws of wss.clients) ws.terminate();
  return new Promise((done, fail) => wss.close((error) => (error ? fail(error) : done())));
}
