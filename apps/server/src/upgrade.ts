import type http from "node:http";
import type { Duplex } from "node:stream";
import { refuseUpgrade } from "./http/origin.ts";

/** One WebSocket endpoint: decides on the handshake itself (origin, identity) and owns its sockets. */
export type UpgradeRoute = {
  handle(req: http.IncomingMessage, socket: Duplex, head: Buffer): void;
  close(): Promise<void>;
};

/** WebSocket endpoints by exact pathname. One http server, one 'upgrade' router. */
export type UpgradeRoutes = Map<string, UpgradeRoute>;

export function routeUpgrade(routes: UpgradeRoutes, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  const pathname = (req.url ?? "/").split("?")[0] ?? "/";
  const route = routes.get(pathname);
  if (route === undefined) return refuseUpgrade(socket, 404, `no WebSocket endpoint at ${pathname.slice(0, 100)}`);
  route.handle(req, socket, head);
}

