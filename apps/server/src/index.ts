// The package's public surface (package.json "exports"): embed the server, e.g. in tests.
export { DEFAULT_WEB_DIR, PEER_PATH, startServer, type ServerHandle, type ServerOptions } from "./server.ts";
export { ICE_SERVERS_ENV, IceConfigError, parseIceServers, type IceServer } from "./ice.ts";
