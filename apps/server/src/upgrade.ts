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

/** RFC 6455 caps a close frame's reason at 123 bytes of UTF-8; `ws` throws past it. */
export const MAX_CLOSE_REASON_BYTES = 123;

/** `text` cut to at most MAX_CLOSE_REASON_BYTES bytes of UTF-8, never in the middle of a character. */
export function closeReason(text: string): string {
  if (Buffer.byteLength(text) <= MAX_CLOSE_REASON_BYTES) return text;
  let out = "";
  let bytes = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch);
    if (bytes + size > MAX_CLOSE_REASON_BYTES - 3) break;
    out += ch;
    bytes += size;
  }
  return `${out}...`;
}
