import type http from "node:http";
import type { Duplex } from "node:stream";

/**
 * Which browser origins may open the server's WebSockets (/ws, /peerjs). Browsers send `Origin` on
 * every WebSocket handshake and pages cannot forge it, so checking it stops another site a
 * volunteer visits from driving sockets with the volunteer's network position. By default only the
 * server's own origin (the Host the request was sent to) is allowed; `--allow-origin` adds more.
 * A handshake without Origin is not from a browser page (scripts, tests): it passes, since it
 * could send any header it likes anyway; identity and tokens are what stop those.
 */
export type OriginPolicy = { allowed: readonly string[] };

export function originRejection(req: http.IncomingMessage, policy: OriginPolicy): string | undefined {
  const origin = req.headers.origin;
  if (origin === undefined) return undefined;
  const host = req.headers.host;
  if (host !== undefined && (origin === `http://${host}` || origin === `https://${host}`)) return undefined;
  if (policy.allowed.includes(origin)) return undefined;
  return `origin ${JSON.stringify(origin.slice(0, 100))} is not allowed (same origin only; see --allow-origin)`;
}

/** Refuses an HTTP upgrade on the raw socket, with a plain status and a short reason. */
export function refuseUpgrade(socket: Duplex, status: 400 | 403 | 404 | 429 | 503, reason: string): void {
  const text = { 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests", 503: "Service Unavailable" }[status];
  const body = `${reason.replace(/[\r\n]/g, " ")}\n`;
  socket.on("error", () => {
    // The client may already be gone; nothing more to tell it.
  });
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
}
