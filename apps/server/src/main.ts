// The `crowdtrain` server CLI: parse flags, start the server, print the URL to share, stop on a signal.
import { existsSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { IceConfigError } from "./ice.ts";
import { DEFAULT_WEB_DIR, startServer, type ServerHandle } from "./server.ts";

const DEFAULT_PORT = 8080;
const DEFAULT_HOST = "0.0.0.0";
/** After a signal, how long close() may take before we give up and exit anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** The e2e harness waits for this prefix followed by a JSON object. */
const READY_PREFIX = "CROWDTRAIN_READY";

const USAGE = `usage: crowdtrain-server [--port N] [--host ADDRESS]
  --port N        port to listen on, 0 picks a free one (env CROWDTRAIN_PORT, default ${DEFAULT_PORT})
  --host ADDRESS  address to bind (env CROWDTRAIN_HOST, default ${DEFAULT_HOST}: all interfaces)
  CROWDTRAIN_ICE_SERVERS='[{"urls":"stun:stun.example.org:3478"}]' adds your own STUN/TURN servers`;

class UsageError extends Error {}

interface Flags {
  port: number;
  host: string;
}

function parseFlags(argv: string[], env: NodeJS.ProcessEnv): Flags | "help" {
  let port = env.CROWDTRAIN_PORT;
  let host = env.CROWDTRAIN_HOST;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--help" || arg === "-h") return "help";
    const [name, inline] = arg.split(/=(.*)/s, 2);
    if (name !== "--port" && name !== "--host") throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    const value = inline ?? argv[++i];
    if (value === undefined || value === "") throw new UsageError(`${name} needs a value`);
    if (name === "--port") port = value;
    else host = value;
  }
  return { port: parsePort(port), host: host ?? DEFAULT_HOST };
}

function parsePort(value: string | undefined): number {
  if (value === undefined) return DEFAULT_PORT;
  const port = Number(value);
  if (!/^\d+$/.test(value) || port > 65535) throw new UsageError(`port must be an integer from 0 to 65535, got ${JSON.stringify(value)}`);
  return port;
}

/** The first non-loopback IPv4 address: what other machines on the LAN can reach. */
function lanAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    const found = addresses?.find((a) => a.family === "IPv4" && !a.internal);
    if (found) return found.address;
  }
  return undefined;
}

function announce(handle: ServerHandle, host: string): void {
  const lines = ["Crowdtrain is running."];
  if (host === "0.0.0.0" || host === "::") {
    const lan = lanAddress();
    if (lan !== undefined) lines.push(`  Share this URL with volunteers: http://${lan}:${handle.port}/`);
    lines.push(`  On this machine:                http://localhost:${handle.port}/`);
    // Browsers expose WebGPU only to secure contexts: https:// or localhost.
    lines.push("  Note: over plain http:// from other machines, browsers disable WebGPU (workers fall back to WebGL/CPU).");
  } else {
    lines.push(`  URL: ${handle.url}/`);
  }
  lines.push(`${READY_PREFIX} ${JSON.stringify({ url: handle.url, port: handle.port })}`);
  console.log(lines.join("\n"));
}

function stopOnSignals(handle: ServerHandle): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: stopping`);
    const timer = setTimeout(() => {
      console.error(`server did not stop within ${SHUTDOWN_TIMEOUT_MS} ms; exiting anyway`);
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS);
    handle.close().then(
      () => {
        clearTimeout(timer);
        process.exit(0);
      },
      (error: unknown) => {
        console.error("error while stopping:", error);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

async function main(): Promise<void> {
  let flags: Flags | "help";
  try {
    flags = parseFlags(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`error: ${error.message}\n${USAGE}`);
    process.exit(2);
  }
  if (flags === "help") {
    console.log(USAGE);
    return;
  }
  if (!existsSync(join(DEFAULT_WEB_DIR, "index.html"))) {
    console.error(`error: the web app is not built (${DEFAULT_WEB_DIR} is missing): run npm run build first`);
    process.exit(1);
  }
  const handle = await startServer({ port: flags.port, host: flags.host });
  stopOnSignals(handle);
  announce(handle, flags.host);
}

main().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  // A bad configuration is a usage error, like a bad flag.
  process.exit(error instanceof IceConfigError ? 2 : 1);
});
