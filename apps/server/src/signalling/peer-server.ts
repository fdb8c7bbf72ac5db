import type http from "node:http";
import type { Duplex } from "node:stream";
import type express from "express";
import { ExpressPeerServer } from "peer";
import { WebSocketServer } from "ws";
import type { IdentityRegistry } from "../identity/registry.ts";
import { originRejection, refuseUpgrade, type OriginPolicy } from "../http/origin.ts";
import type { TimerScope } from "../timer-scope.ts";
import type { UpgradeRoute } from "../upgrade.ts";

/** Where the PeerJS signalling server is mounted; browsers learn it from /api/config. */
export const PEER_PATH = "/peerjs";
/** Largest signalling message accepted: SDP offers with their candidates are a few KiB. */
const PEER_MAX_MESSAGE_BYTES = 64 * 1024;

export type PeerServerDeps = {
  app: express.Express;
  server: http.Server;
  timers: TimerScope;
  identities: IdentityRegistry;
  origins: OriginPolicy;
  onLog: (text: string) => void;
};

/**
 * PeerJS signalling, mounted at PEER_PATH. Only identities the server issued may register (the
 * key, id and token of the handshake are checked before peer sees the socket), from an allowed
 * origin; a revoked identity's signalling socket is closed.
 */
export function mountPeerServer(deps: PeerServerDeps): { path: string; route: UpgradeRoute } {
  const { app, server, timers, identities } = deps;
  let wss: WebSocketServer | undefined;
  let wsPath: string | undefined;
  const peerApp = ExpressPeerServer(server, {
    path: "/",
    key: identities.peerKey,
    allow_discovery: false,
    proxied: false,
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
  // peer re-emits socket errors on the app; an EventEmitter 'error' without a listener would crash us.
  peerApp.on("error", (error: Error) => deps.onLog(`peerjs: ${error.message}`));
  // Mounting starts peer's WebSocket server and its timer loops; the scope lets close() stop them.
  timers.run(() => app.use(PEER_PATH, peerApp));
  if (wss === undefined || wsPath === undefined) throw new Error("peer did not create its WebSocket server on mount");
  const sockets = wss;
  const route: UpgradeRoute = {
    handle(req: http.IncomingMessage, socket: Duplex, head: Buffer) {
      const refused = originRejection(req, deps.origins);
      if (refused !== undefined) return refuseUpgrade(socket, 403, refused);
      const query = new URL(req.url ?? "/", "http://x").searchParams;
      const id = query.get("id") ?? "";
      if (!identities.checkPeer(id, query.get("key") ?? "", query.get("token") ?? "")) {
        return refuseUpgrade(socket, 403, "PeerJS accepts only ids this server issued, with their key and token");
      }
      sockets.handleUpgrade(req, socket, head, (ws) => sockets.emit("connection", ws, req));
    },
    close: () => closeAll(sockets),
  };
  return { path: wsPath, route };
}

function closeAll(wss: WebSocketServer): Promise<void> {
  // A noServer WebSocketServer only reports 'close' once its clients are gone.
  for (const ws of wss.clients) ws.terminate();
  return new Promise((done, fail) => wss.close((error) => (error ? fail(error) : done())));
}
