// The address a request comes from: the socket's peer, or, behind a reverse proxy the operator
// named (--trust-proxy), the client that proxy forwarded for. Bans, rate limits and identities key
// on it, so X-Forwarded-For from anyone else is never believed (it is a header any client can set).
import type http from "node:http";
import proxyAddr from "proxy-addr";

export type ClientAddress = (req: http.IncomingMessage) => string;

export class TrustProxyError extends Error {
  override name = "TrustProxyError";
}

/**
 * `trusted`: addresses or CIDR ranges of the proxies in front of the server, or proxy-addr's names
 * `loopback`, `linklocal`, `uniquelocal`. Empty: no proxy, the socket's peer is the client.
 */
export function clientAddressOf(trusted: readonly string[]): ClientAddress {
  if (trusted.length === 0) return (req) => req.socket.remoteAddress ?? "unknown";
  let trust: ReturnType<typeof proxyAddr.compile>;
  try {
    trust = proxyAddr.compile([...trusted]);
  } catch (error) {
    throw new TrustProxyError(`--trust-proxy: ${(error as Error).message} (give addresses, CIDR ranges, or loopback, linklocal, uniquelocal)`);
  }
  return (req) => (req.socket.remoteAddress === undefined ? "unknown" : proxyAddr(req, trust));
}
