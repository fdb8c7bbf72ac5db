// The `crowdtrain` server CLI: parse flags, start the server, print the URL to share, stop on a signal.
import { existsSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { parseFlags, UsageError, USAGE, type Flags } from "./cli/flags.ts";
import { TrustProxyError } from "./http/client-address.ts";
import { createLogger } from "./log/logger.ts";
import { fingerprint, loadTlsFiles, selfSignedTls, TlsConfigError, type TlsCredentials } from "./http/tls.ts";
import { IceConfigError } from "./ice.ts";
import { TurnConfigError } from "./signalling/turn.ts";
import { DEFAULT_WEB_DIR, startServer, WEB_PAGES, type ServerHandle } from "./server.ts";
import { readJobFile } from "./training/job-file.ts";
import { checkRoundDeadline, DEFAULT_ROUND_DEADLINE_MS } from "./training/round-deadline.ts";

/** After a signal, how long close() may take before we give up and exit anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** The e2e harness waits for this prefix followed by a JSON object. */
const READY_PREFIX = "CROWDTRAIN_READY";

/** The first non-loopback IPv4 address: what other machines on the LAN can reach. */
function lanAddress(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    const found = addresses?.find((a) => a.family === "IPv4" && !a.internal);
    if (found) return found.address;
  }
  return undefined;
}

function announce(handle: ServerHandle, host: string, tls: LoadedTls | undefined): void {
  const lines = ["Crowdtrain is running."];
  const training = handle.training;
  const scheme = tls === undefined ? "http" : "https";
  const join = training?.joinToken === undefined ? "" : `?join=${encodeURIComponent(training.joinToken)}`;
  if (host === "0.0.0.0" || host === "::") {
    const lan = lanAddress();
    if (lan !== undefined) lines.push(`  Share this URL with volunteers: ${scheme}://${lan}:${handle.port}/${join}`);
    lines.push(`  On this machine:                ${scheme}://localhost:${handle.port}/`);
    // Browsers expose WebGPU only to secure contexts: https:// or localhost.
    if (tls === undefined) lines.push("  Note: over plain http:// from other machines, browsers disable WebGPU (workers fall back to WebGL/CPU); see --tls-self-signed.");
  } else {
    lines.push(`  URL: ${handle.url}/${join}`);
  }
  if (tls?.selfSigned === true) {
    lines.push(`  HTTPS with a self-signed certificate (${tls.file}): each browser warns once; volunteers choose to proceed.`);
    lines.push(`  Its SHA-256 fingerprint, for volunteers to compare: ${fingerprint(tls.credentials.cert)}`);
  }
  if (training !== undefined) {
    const { job } = training.status();
    lines.push(`  Job: ${job.name} (${job.model.kind} on ${job.dataset}); dashboard: ${handle.url}/dashboard`);
    lines.push(`  Admin token (the dashboard's pause/stop/target controls): ${training.adminToken}`);
  }
  lines.push(`${READY_PREFIX} ${JSON.stringify({ url: handle.url, port: handle.port })}`);
  console.log(lines.join("\n"));
}

type LoadedTls = { credentials: TlsCredentials; selfSigned: boolean; file: string };

/** The certificate the flags ask for; a self-signed one names every address this machine answers on. */
async function loadTls(flags: Flags): Promise<LoadedTls | undefined> {
  if (flags.tls === undefined) return undefined;
  if (flags.tls.kind === "files") return { credentials: await loadTlsFiles(flags.tls.cert, flags.tls.key), selfSigned: false, file: flags.tls.cert };
  const names = new Set(["localhost", hostname(), "127.0.0.1", "::1"]);
  if (flags.host !== "0.0.0.0" && flags.host !== "::") names.add(flags.host);
  for (const addresses of Object.values(networkInterfaces())) for (const a of addresses ?? []) if (!a.address.startsWith("fe80")) names.add(a.address);
  const dir = join(flags.dataDir, "tls");
  const made = await selfSignedTls(dir, [...names]);
  return { credentials: { cert: made.cert, key: made.key }, selfSigned: true, file: join(dir, "self-signed.crt") };
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
  if (!Object.values(WEB_PAGES).every((page) => existsSync(join(DEFAULT_WEB_DIR, page)))) {
    console.error(`error: the web app is not built (${DEFAULT_WEB_DIR} is missing): run npm run build first`);
    process.exit(1);
  }
  const job = await readJobFile(flags.job);
  // The deadline must fall between the timeouts of the all-reducer this job's workers run (round-deadline.ts).
  const roundDeadlineMs = DEFAULT_ROUND_DEADLINE_MS;
  checkRoundDeadline(roundDeadlineMs, job.aggregation);
  if (!existsSync(join(flags.datasets, job.dataset, "manifest.json"))) {
    console.error(`error: dataset ${job.dataset} is not built in ${flags.datasets}: run npm run build first`);
    process.exit(1);
  }
  const tls = await loadTls(flags);
  const handle = await startServer({
    port: flags.port,
    host: flags.host,
    tls: tls?.credentials,
    trustProxy: flags.trustProxy,
    turn: flags.turn,
    logger: createLogger({ format: flags.logFormat, level: flags.logLevel, write: (line) => console.log(line) }),
    iceTransportPolicy: flags.iceTransportPolicy,
    lab: flags.lab,
    allowedOrigins: flags.allowOrigins,
    training: {
      job,
      datasetsDir: flags.datasets,
      minWorkers: flags.minWorkers,
      roundDeadlineMs,
      adminToken: flags.adminToken,
      dataDir: flags.dataDir,
      checkpointEveryRounds: flags.checkpointEvery,
      heartbeatTimeoutMs: flags.heartbeatTimeoutMs,
      joinToken: flags.joinToken,
      maxMembers: flags.maxMembers,
      hellosPerSecond: flags.hellosPerSecond,
      banMs: flags.banMinutes * 60_000,
      serving: {
        maxBatch: flags.serving.maxBatch,
        maxWaitMs: flags.serving.maxWaitMs,
        deadlineMs: flags.serving.deadlineMs,
        autoscaler: {
          minTabs: flags.serving.minTabs,
          maxTabs: flags.serving.maxTabs,
          stableWindowMs: flags.serving.stableWindowMs,
          scaleDownDelayMs: flags.serving.scaleDownDelayMs,
        },
      },
    },
  });
  stopOnSignals(handle);
  announce(handle, flags.host, tls);
}

// The server only evaluates and exports on TF.js's CPU backend; production mode skips debug checks
// and the banner suggesting tfjs-node (a native build this project does not need).
tf.enableProdMode();
main().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  // A bad configuration is a usage error, like a bad flag.
  process.exit([IceConfigError, TlsConfigError, TrustProxyError, TurnConfigError].some((kind) => error instanceof kind) ? 2 : 1);
});
