import http from "node:http";
import type { AddressInfo } from "node:net";
import { join, resolve } from "node:path";
import type { Duplex } from "node:stream";
import express from "express";
import { ExpressPeerServer } from "peer";
import { WebSocketServer } from "ws";
import { ICE_SERVERS_ENV, parseIceServers, validateIceServers, type IceServer } from "./ice.ts";
import { createTimerScope, type TimerScope } from "./timer-scope.ts";
import { startTraining, type TrainingOptions, type TrainingService } from "./training/service.ts";

/** Where the PeerJS signalling server is mounted; browsers learn it from /api/config. */
export const PEER_PATH = "/peerjs";
/** Largest signalling message accepted: SDP offers with their candidates are a few KiB. */
const PEER_MAX_MESSAGE_BYTES = 64 * 1024;
/** How long close() waits for the HTTP server to let go of its connections. */
const HTTP_CLOSE_TIMEOUT_MS = 5_000;

/** The built web app, produced by `npm run build` (see vite.config.ts): one folder per app, shared assets. */
export const DEFAULT_WEB_DIR = resolve(import.meta.dirname, "../../../dist/web");
/** The pages, by URL path, as files of the web dir. */
export const WEB_PAGES: Readonly<Record<string, string>> = {
  "/": "worker/index.html",
  "/index.html": "worker/index.html",
  "/lab.html": "worker/lab.html",
  "/dashboard": "dashboard/index.html",
};

export interface ServerOptions {
  /** 0 picks a free port (tests). Default 0. */
  port?: number;
  /** Default 127.0.0.1: exposing the server to the network is the CLI's explicit choice. */
  host?: string;
  webDir?: string;
  /** Default: CROWDTRAIN_ICE_SERVERS if set, else none (never a public STUN/TURN host). */
  iceServers?: IceServer[];
  /** The job to run, with its coordinator at /ws. Without it the server only signals and serves pages. */
  training?: TrainingOptions;
}

export interface ServerHandle {
  /** Base URL without trailing slash, reachable from this machine. */
  url: string;
  port: number;
  training: TrainingService | undefined;
  close(): Promise<void>;
}

/** WebSocket endpoints by exact pathname. One http server, one 'upgrade' router. */
type WsRoutes = Map<string, WebSocketServer>;

export async function startServer(options: ServerOptions = {}): Promise<ServerHandle> {
  const iceServers = resolveIceServers(options.iceServers);
  const host = options.host ?? "127.0.0.1";
  const app = express();
  app.disable("x-powered-by");
  const server = http.createServer(app);
  const timers = createTimerScope();
  const wsRoutes: WsRoutes = new Map();

  app.get("/api/health", (_req, res) => {
    res.json({ ok: true });
  });
  app.get("/api/config", (_req, res) => {
    res.json({ peerPath: PEER_PATH, iceServers });
  });
  mountPeerServer(app, server, wsRoutes, timers);
  const training = options.training === undefined ? undefined : await startTraining(options.training);
  if (training !== undefined) {
    app.use(training.router);
    wsRoutes.set("/ws", training.hub.wss);
  }
  mountWebApp(app, options.webDir ?? DEFAULT_WEB_DIR);
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => routeUpgrade(wsRoutes, req, socket, head));

  let closing: Promise<void> | undefined;
  const close = () => (closing ??= shutdown(server, wsRoutes, timers, training));
  let port: number;
  try {
    port = await listen(server, options.port ?? 0, host);
  } catch (error) {
    await close();
    throw error;
  }
  return { url: urlFor(host, port), port, training, close };
}

function resolveIceServers(fromOptions: IceServer[] | undefined): IceServer[] {
  if (fromOptions !== undefined) return validateIceServers(fromOptions, "options.iceServers");
  const fromEnv = process.env[ICE_SERVERS_ENV];
  if (fromEnv === undefined || fromEnv.trim() === "") return [];
  return parseIceServers(fromEnv, ICE_SERVERS_ENV);
}

/**
 * The pages at their URLs (WEB_PAGES; `/dashboard/` too), never cached, so a rebuilt app is picked
 * up on reload; their hashed assets under /assets cached for good; other built files as they are.
 */
function mountWebApp(app: express.Express, webDir: string): void {
  for (const [path, file] of Object.entries(WEB_PAGES)) {
    app.get(path, (_req, res) => {
      res.sendFile(join(webDir, file), { headers: { "cache-control": "no-cache" } }, (error) => {
        if (error === undefined || res.headersSent) return;
        res.status(404).type("text").send(`${path} is not built (${join(webDir, file)} is missing): run npm run build`);
      });
    });
  }
  app.use("/assets", express.static(join(webDir, "assets"), { immutable: true, maxAge: "1y", index: false }));
  app.use(express.static(webDir, { index: false }));
}

function mountPeerServer(app: express.Express, server: http.Server, wsRoutes: WsRoutes, timers: TimerScope): void {
  const peerApp = ExpressPeerServer(server, {
    path: "/",
    allow_discovery: false,
    proxied: false,
    // Only our own pages talk to it: no CORS headers.
    corsOptions: { origin: false },
    // peer would attach a WebSocketServer to `server` itself, which answers 400 to upgrades on other
    // paths. Give it a detached one and route upgrades ourselves (routeUpgrade).
    createWebSocketServer: (wsOptions) => {
      if (wsOptions.path === undefined) throw new Error("peer did not say where its WebSocket lives");
      const wss = new WebSocketServer({ noServer: true, maxPayload: PEER_MAX_MESSAGE_BYTES });
      wsRoutes.set(wsOptions.path, wss);
      return wss;
    },
  });
  // peer re-emits socket errors on the app; an EventEmitter 'error' without a listener would crash us.
  peerApp.on("error", (error) => {
    console.error(`[peerjs] ${error.stack ?? String(error)}`);
  });
  // Mounting starts peer's WebSocket server and its timer loops; the scope lets close() stop them.
  timers.run(() => app.use(PEER_PATH, peerApp));
}

function routeUpgrade(routes: WsRoutes, req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
  const pathname = (req.url ?? "/").split("?")[0] ?? "/";
  const wss = routes.get(pathname);
  if (wss === undefined) {
    socket.on("error", (error) => {
      console.error(`[upgrade] socket error while refusing ${pathname}: ${error.message}`);
    });
    socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => wss.emit("connection", ws, req));
}

function listen(server: http.Server, port: number, host: string): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const onError = (error: Error) => reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`, { cause: error }));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      resolvePort((server.address() as AddressInfo).port);
    });
  });
}

async function shutdown(server: http.Server, wsRoutes: WsRoutes, timers: TimerScope, training: TrainingService | undefined): Promise<void> {
  timers.clearAll();
  if (training !== undefined) {
    // The hub closes its own WebSocket server (after its ticker); do not close it twice.
    wsRoutes.delete("/ws");
    await training.close();
  }
  await Promise.all([...wsRoutes.values()].map(closeWebSocketServer));
  await closeHttpServer(server);
}

function closeWebSocketServer(wss: WebSocketServer): Promise<void> {
  // A noServer WebSocketServer only reports 'close' once its clients are gone.
  for (const ws of wss.clients) ws.terminate();
  return new Promise((done, fail) => wss.close((error) => (error ? fail(error) : done())));
}

function closeHttpServer(server: http.Server): Promise<void> {
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

function urlFor(host: string, port: number): string {
  if (host === "0.0.0.0" || host === "::") return `http://localhost:${port}`;
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
