import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import type { Duplex } from "node:stream";
import express from "express";
import type { SignallingConfig } from "@crowdtrain/protocol";
import { clientAddressOf, type ClientAddress } from "./http/client-address.ts";
import { errorHandler, notFoundHandler } from "./http/errors.ts";
import { securityHeaders } from "./http/headers.ts";
import type { OriginPolicy } from "./http/origin.ts";
import type { TlsCredentials } from "./http/tls.ts";
import { ICE_SERVERS_ENV, parseIceServers, validateIceServers, type IceServer } from "./ice.ts";
import { IdentityRegistry } from "./identity/registry.ts";
import { createLogger, type Logger } from "./log/logger.ts";
import { configRoute } from "./signalling/config-route.ts";
import { mountPeerServer, PEER_PATH } from "./signalling/peer-server.ts";
import { checkTurnOptions, TurnConfigError, type TurnOptions } from "./signalling/turn.ts";
import { createTimerScope, type TimerScope } from "./timer-scope.ts";
import { SERVE_PATH } from "./serving/pool.ts";
import { startTraining, type TrainingOptions, type TrainingService } from "./training/service.ts";
import { routeUpgrade, type UpgradeRoutes } from "./upgrade.ts";

export { PEER_PATH } from "./signalling/peer-server.ts";
/** How long close() waits for the HTTP server to let go of its connections. */
const HTTP_CLOSE_TIMEOUT_MS = 5_000;

/** The built web app, produced by `npm run build` (see vite.config.ts): one folder per app, shared assets. */
export const DEFAULT_WEB_DIR = resolve(import.meta.dirname, "../../../dist/web");
/** The pages, by URL path, as files of the web dir. */
export const WEB_PAGES: Readonly<Record<string, string>> = {
  "/": "worker/index.html",
  "/index.html": "worker/index.html",
  "/dashboard": "dashboard/index.html",
};
/**
 * The lab page: primitives for e2e tests and benchmarks (raw data channels, all-reduce on chosen
 * data), built apart by `npm run build:lab` (base /lab/, so its assets are /lab/assets/*). Served
 * only with `lab: true` (`--lab`), never by a default server: it hands out identities without
 * joining the job.
 */
export const DEFAULT_LAB_DIR = resolve(import.meta.dirname, "../../../dist/lab");
export const LAB_PAGES: Readonly<Record<string, string>> = { "/lab.html": "worker/lab.html" };

export interface ServerOptions {
  /** 0 picks a free port (tests). Default 0. */
  port?: number;
  /** Default 127.0.0.1: exposing the server to the network is the CLI's explicit choice. */
  host?: string;
  webDir?: string;
  /** The lab build (`npm run build:lab`), served only with `lab`. Default dist/lab. */
  labDir?: string;
  /** Default: CROWDTRAIN_ICE_SERVERS if set, else none (never a public STUN/TURN host). */
  iceServers?: IceServer[];
  /** The job to run, with its coordinator at /ws. Without it the server only signals and serves pages. */
  training?: TrainingOptions;
  /** Serve the lab page and its identity endpoint (tests and benchmarks only). Default false. */
  lab?: boolean;
  /** Origins besides the server's own that may open /ws and /peerjs. Default none. */
  allowedOrigins?: string[];
  /** Serve HTTPS and WSS with this certificate (browsers give WebGPU only to secure pages). Default: plain HTTP. */
  tls?: TlsCredentials;
  /** The server's log: cluster events and the server's warnings. Default: only the warnings, as text on stderr. */
  logger?: Logger;
  /** The operator's TURN server, whose credentials the server mints per worker. Default none. */
  turn?: TurnOptions;
  /** "relay": peers connect only through TURN (no volunteer learns another's address). Default "all". */
  iceTransportPolicy?: "all" | "relay";
  /**
   * Reverse proxies whose X-Forwarded-For is believed (addresses, CIDR ranges, or `loopback`,
   * `linklocal`, `uniquelocal`). Default none: the socket's peer is the client.
   */
  trustProxy?: string[];
}

export interface ServerHandle {
  /** Base URL without trailing slash, reachable from this machine. */
  url: string;
  port: number;
  training: TrainingService | undefined;
  close(): Promise<void>;
}

export async function startServer(options: ServerOptions = {}): Promise<ServerHandle> {
  const iceServers = resolveIceServers(options.iceServers);
  const host = options.host ?? "127.0.0.1";
  const app = express();
  app.disable("x-powered-by");
  app.use(securityHeaders());
  const server = options.tls === undefined ? http.createServer(app) : https.createServer({ cert: options.tls.cert, key: options.tls.key }, app);
  const clientAddress = clientAddressOf(options.trustProxy ?? []);
  const timers = createTimerScope();
  const routes: UpgradeRoutes = new Map();
  const identities = new IdentityRegistry();
  const origins: OriginPolicy = { allowed: options.allowedOrigins ?? [] };
  const warnings = options.logger ?? createLogger({ format: "text", level: "warn", write: (line) => console.error(line) });
  const log = (text: string): void => warnings.log({ at: Date.now(), level: "warn", kind: "server", text });

  app.get("/api/health", (_req, res) => {
    res.json({ ok: true });
  });
  // The protocol's SignallingConfigSchema is what the worker parses this answer with.
  const signalling: SignallingConfig = { peerPath: PEER_PATH, iceServers, iceTransportPolicy: options.iceTransportPolicy ?? "all" };
  const turn = options.turn === undefined ? undefined : checkTurnOptions(options.turn);
  if (signalling.iceTransportPolicy === "relay" && turn === undefined && !iceServers.some((s) => [s.urls].flat().some((u) => u.startsWith("turn")))) {
    throw new TurnConfigError("a relay-only ICE policy needs a TURN server: give --turn-url and --turn-secret, or a turn: entry in CROWDTRAIN_ICE_SERVERS");
  }
  app.get("/api/config", configRoute(signalling, identities, turn));
  const peers = mountPeerServer({ app, server, timers, identities, origins, onLog: log });
  routes.set(peers.path, peers.route);
  let training: TrainingService | undefined;
  try {
    training = options.training === undefined ? undefined : await startTraining(options.training, { identities, origins, clientAddress, logger: options.logger });
  } catch (error) {
    // A refused job (too big, no dataset, a bad checkpoint): peer's timers already run; stop them.
    await shutdown(server, routes, timers, undefined);
    throw error;
  }
  if (training !== undefined) {
    app.use(training.router);
    routes.set("/ws", training.hub.route);
    if (training.serving !== undefined) routes.set(SERVE_PATH, training.serving.route);
  }
  if (options.lab === true) mountLab(app, identities, clientAddress);
  if (options.lab === true) mountPages(app, options.labDir ?? DEFAULT_LAB_DIR, LAB_PAGES, "/lab/assets", "npm run build:lab");
  mountWebApp(app, options.webDir ?? DEFAULT_WEB_DIR);
  app.use(notFoundHandler());
  app.use(errorHandler({ onLog: log }));
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => routeUpgrade(routes, req, socket, head));

  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown(server, routes, timers, training));
  let port: number;
  try {
    port = await listen(server, options.port ?? 0, host);
  } catch (error) {
    await close();
    throw error;
  }
  return { url: urlFor(options.tls === undefined ? "http" : "https", host, port), port, training, close };
}

/**
 * The lab's identities: a lab page registers with PeerJS like a worker, but does not join the job,
 * so it asks here. Only mounted with `lab: true`; each identity lives as long as the server.
 */
function mountLab(app: express.Express, identities: IdentityRegistry, clientAddress: ClientAddress): void {
  app.post("/api/lab/identity", (req, res) => {
    res.json(identities.issue(clientAddress(req)));
  });
}

function resolveIceServers(fromOptions: IceServer[] | undefined): IceServer[] {
  if (fromOptions !== undefined) return validateIceServers(fromOptions, "options.iceServers");
  const fromEnv = process.env[ICE_SERVERS_ENV];
  if (fromEnv === undefined || fromEnv.trim() === "") return [];
  return parseIceServers(fromEnv, ICE_SERVERS_ENV);
}

/**
 * The product's pages and files: the pages at their URLs, then other built files as they are
 * (public/'s icon and robots.txt) except HTML, which is reachable only at its page's URL.
 */
function mountWebApp(app: express.Express, webDir: string): void {
  mountPages(app, webDir, WEB_PAGES, "/assets", "npm run build");
  const served = new Set(Object.values(WEB_PAGES).map((file) => `/${file}`));
  const files = express.static(webDir, { index: false });
  app.use((req, res, next) => {
    if (req.path.endsWith(".html") && !served.has(req.path)) return next();
    files(req, res, next);
  });
}

/**
 * Pages of one build at their URLs, never cached, so a rebuilt app is picked up on reload; the build's
 * hashed assets at `assetsPath`, cached for good.
 */
function mountPages(app: express.Express, dir: string, pages: Readonly<Record<string, string>>, assetsPath: string, build: string): void {
  for (const [path, file] of Object.entries(pages)) {
    app.get(path, (_req, res) => {
      res.sendFile(join(dir, file), { headers: { "cache-control": "no-cache" } }, (error) => {
        if (error === undefined || res.headersSent) return;
        res.status(404).json({ error: `${path} is not built (${file} is missing): run ${build}` });
      });
    });
  }
  app.use(assetsPath, express.static(join(dir, "assets"), { immutable: true, maxAge: "1y", index: false }));
}

function listen(server: http.Server | https.Server, port: number, host: string): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const onError = (error: Error) => reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`, { cause: error }));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolvePort((server.address() as AddressInfo).port);
    });
  });
}

async function shutdown(server: http.Server | https.Server, routes: UpgradeRoutes, timers: TimerScope, training: TrainingService | undefined): Promise<void> {
  timers.clearAll();
  if (training !== undefined) {
    // The hub closes its own sockets (after its ticker); do not close them twice.
    routes.delete("/ws");
    routes.delete(SERVE_PATH);
    await training.close();
  }
  await Promise.all([...routes.values()].map((route) => route.close()));
  await closeHttpServer(server);
}

function closeHttpServer(server: http.Server | https.Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`http server did not close within ${HTTP_CLOSE_TIMEOUT_MS} ms`)),
      HTTP_CLOSE_TIMEOUT_MS,
    );
    server.close((error) => {
      clearTimeout(timer);
      if (error) fail(error);
      else done();
    });
    server.closeAllConnections();
  });
}

function urlFor(scheme: "http" | "https", host: string, port: number): string {
  if (host === "0.0.0.0" || host === "::") return `${scheme}://localhost:${port}`;
  return `${scheme}://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
