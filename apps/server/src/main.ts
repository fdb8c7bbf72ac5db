// The `crowdtrain` server CLI: parse flags, start the server, print the URL to share, stop on a signal.
import { existsSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { join, resolve } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { ADMIN_TOKEN_ENV, AdminTokenError, validateAdminToken } from "./admin/token.ts";
import { IceConfigError } from "./ice.ts";
import { DEFAULT_WEB_DIR, startServer, WEB_PAGES, type ServerHandle } from "./server.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_HELLOS_PER_SECOND, DEFAULT_MAX_MEMBERS } from "./cluster/hub.ts";
import { DEFAULT_JOB_FILE, readJobFile } from "./training/job-file.ts";
import { DEFAULT_CHECKPOINT_EVERY } from "./training/service.ts";
import { checkRoundDeadline, DEFAULT_ROUND_DEADLINE_MS } from "./training/round-deadline.ts";

/** Where `npm run build` puts the datasets (one directory each, see packages/training/DATASETS.md). */
const DEFAULT_DATASETS_DIR = join(import.meta.dirname, "../../../dist/datasets");

const DEFAULT_PORT = 8080;
const DEFAULT_HOST = "0.0.0.0";
/** After a signal, how long close() may take before we give up and exit anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** The e2e harness waits for this prefix followed by a JSON object. */
const READY_PREFIX = "CROWDTRAIN_READY";

const USAGE = `usage: crowdtrain-server [--port N] [--host ADDRESS] [--job FILE] [--datasets DIR] [--min-workers N] [--admin-token TOKEN]
                         [--data-dir DIR] [--checkpoint-every N] [--heartbeat-timeout-ms MS] [--join-token TOKEN]
                         [--allow-origin ORIGIN,...] [--max-members N] [--hellos-per-second N] [--ban-minutes N] [--lab]
  --port N         port to listen on, 0 picks a free one (env CROWDTRAIN_PORT, default ${DEFAULT_PORT})
  --host ADDRESS   address to bind (env CROWDTRAIN_HOST, default ${DEFAULT_HOST}: all interfaces)
  --job FILE       training job (env CROWDTRAIN_JOB, default apps/server/jobs/mnist-mlp.json)
  --datasets DIR   directory of built datasets (env CROWDTRAIN_DATASETS, default dist/datasets)
  --min-workers N  workers that must be ready before the first round (env CROWDTRAIN_MIN_WORKERS, default 1)
  --admin-token T  token of the dashboard's operator controls (env ${ADMIN_TOKEN_ENV}, default: random, printed at start)
  --data-dir DIR   checkpoints; the job resumes from the latest one there (env CROWDTRAIN_DATA_DIR, default ./data)
  --checkpoint-every N      checkpoint every N committed rounds and on SIGTERM (env CROWDTRAIN_CHECKPOINT_EVERY, default ${DEFAULT_CHECKPOINT_EVERY})
  --heartbeat-timeout-ms MS drop a worker whose socket is silent this long (env CROWDTRAIN_HEARTBEAT_TIMEOUT_MS, default ${DEFAULT_HEARTBEAT_TIMEOUT_MS})
  --join-token T   make the job private: workers join only with ?join=T in their URL (env CROWDTRAIN_JOIN_TOKEN, default: public)
  --allow-origin O other web origins that may open the server's sockets, comma-separated (env CROWDTRAIN_ALLOW_ORIGIN, default: same origin only)
  --max-members N  workers the job admits at once (env CROWDTRAIN_MAX_MEMBERS, default ${DEFAULT_MAX_MEMBERS})
  --hellos-per-second N     new worker connections per address per second (env CROWDTRAIN_HELLOS_PER_SECOND, default ${DEFAULT_HELLOS_PER_SECOND})
  --ban-minutes N  an evicted member's address may not rejoin for N minutes, 0 = never ban (env CROWDTRAIN_BAN_MINUTES, default 60; loopback is never banned)
  --lab            also serve the lab page (/lab.html) for e2e tests and benchmarks; never on a public server
  CROWDTRAIN_ICE_SERVERS='[{"urls":"stun:stun.example.org:3478"}]' adds your own STUN/TURN servers`;

class UsageError extends Error {}

interface Flags {
  port: number;
  host: string;
  job: string;
  datasets: string;
  minWorkers: number;
  adminToken: string | undefined;
  dataDir: string;
  checkpointEvery: number;
  heartbeatTimeoutMs: number;
  joinToken: string | undefined;
  allowOrigins: string[];
  maxMembers: number;
  hellosPerSecond: number;
  banMinutes: number;
  lab: boolean;
}

const FLAG_NAMES = [
  "--port",
  "--host",
  "--job",
  "--datasets",
  "--min-workers",
  "--admin-token",
  "--data-dir",
  "--checkpoint-every",
  "--heartbeat-timeout-ms",
  "--join-token",
  "--allow-origin",
  "--max-members",
  "--hellos-per-second",
  "--ban-minutes",
] as const;
type FlagName = (typeof FLAG_NAMES)[number];

function parseFlags(argv: string[], env: NodeJS.ProcessEnv): Flags | "help" {
  const values: Partial<Record<FlagName, string>> = {
    "--port": env.CROWDTRAIN_PORT,
    "--host": env.CROWDTRAIN_HOST,
    "--job": env.CROWDTRAIN_JOB,
    "--datasets": env.CROWDTRAIN_DATASETS,
    "--min-workers": env.CROWDTRAIN_MIN_WORKERS,
    "--admin-token": env[ADMIN_TOKEN_ENV] === "" ? undefined : env[ADMIN_TOKEN_ENV],
    "--data-dir": env.CROWDTRAIN_DATA_DIR,
    "--checkpoint-every": env.CROWDTRAIN_CHECKPOINT_EVERY,
    "--heartbeat-timeout-ms": env.CROWDTRAIN_HEARTBEAT_TIMEOUT_MS,
    "--join-token": env.CROWDTRAIN_JOIN_TOKEN === "" ? undefined : env.CROWDTRAIN_JOIN_TOKEN,
    "--allow-origin": env.CROWDTRAIN_ALLOW_ORIGIN,
    "--max-members": env.CROWDTRAIN_MAX_MEMBERS,
    "--hellos-per-second": env.CROWDTRAIN_HELLOS_PER_SECOND,
    "--ban-minutes": env.CROWDTRAIN_BAN_MINUTES,
  };
  let lab = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--lab") {
      lab = true;
      continue;
    }
    const [name, inline] = arg.split(/=(.*)/s, 2);
    if (!FLAG_NAMES.includes(name as FlagName)) throw new UsageError(`unknown argument ${JSON.stringify(arg)}`);
    const value = inline ?? argv[++i];
    if (value === undefined || value === "") throw new UsageError(`${name} needs a value`);
    values[name as FlagName] = value;
  }
  return {
    port: parsePort(values["--port"]),
    host: values["--host"] ?? DEFAULT_HOST,
    job: values["--job"] ?? DEFAULT_JOB_FILE,
    datasets: values["--datasets"] ?? DEFAULT_DATASETS_DIR,
    minWorkers: positiveInteger("--min-workers", values["--min-workers"] ?? "1"),
    adminToken: adminTokenFlag(values["--admin-token"]),
    dataDir: resolve(values["--data-dir"] ?? "data"),
    checkpointEvery: positiveInteger("--checkpoint-every", values["--checkpoint-every"] ?? String(DEFAULT_CHECKPOINT_EVERY)),
    heartbeatTimeoutMs: positiveInteger("--heartbeat-timeout-ms", values["--heartbeat-timeout-ms"] ?? String(DEFAULT_HEARTBEAT_TIMEOUT_MS)),
    joinToken: tokenFlag("--join-token", values["--join-token"]),
    allowOrigins: originsFlag(values["--allow-origin"]),
    maxMembers: positiveInteger("--max-members", values["--max-members"] ?? String(DEFAULT_MAX_MEMBERS)),
    hellosPerSecond: positiveInteger("--hellos-per-second", values["--hellos-per-second"] ?? String(DEFAULT_HELLOS_PER_SECOND)),
    banMinutes: nonNegativeInteger("--ban-minutes", values["--ban-minutes"] ?? "60"),
    lab,
  };
}

function nonNegativeInteger(flag: string, value: string): number {
  if (!/^\d{1,6}$/.test(value)) throw new UsageError(`${flag} must be a whole number from 0 to 999999, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** Origins as browsers send them: scheme://host[:port], nothing after. */
function originsFlag(value: string | undefined): string[] {
  if (value === undefined) return [];
  const origins = value.split(",").map((o) => o.trim()).filter(Boolean);
  for (const origin of origins) {
    if (!/^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$/.test(origin) && !/^https?:\/\/\[[0-9a-fA-F:]+\](:\d{1,5})?$/.test(origin)) {
      throw new UsageError(`--allow-origin: ${JSON.stringify(origin)} is not an origin like https://example.org or http://10.0.0.2:8080`);
    }
  }
  return origins;
}

function positiveInteger(flag: string, value: string): number {
  if (!/^[1-9]\d*$/.test(value)) throw new UsageError(`${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

function adminTokenFlag(value: string | undefined): string | undefined {
  return tokenFlag("--admin-token", value);
}

function tokenFlag(flag: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  try {
    return validateAdminToken(value, flag);
  } catch (error) {
    if (error instanceof AdminTokenError) throw new UsageError(error.message);
    throw error;
  }
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
  const training = handle.training;
  if (host === "0.0.0.0" || host === "::") {
    const lan = lanAddress();
    const join = training?.joinToken === undefined ? "" : `?join=${encodeURIComponent(training.joinToken)}`;
    if (lan !== undefined) lines.push(`  Share this URL with volunteers: http://${lan}:${handle.port}/${join}`);
    lines.push(`  On this machine:                http://localhost:${handle.port}/`);
    // Browsers expose WebGPU only to secure contexts: https:// or localhost.
    lines.push("  Note: over plain http:// from other machines, browsers disable WebGPU (workers fall back to WebGL/CPU).");
  } else {
    lines.push(`  URL: ${handle.url}/${training?.joinToken === undefined ? "" : `?join=${encodeURIComponent(training.joinToken)}`}`);
  }
  if (training !== undefined) {
    const { job } = training.status();
    lines.push(`  Job: ${job.name} (${job.model.kind} on ${job.dataset}); dashboard: ${handle.url}/dashboard`);
    lines.push(`  Admin token (the dashboard's pause/stop/target controls): ${training.adminToken}`);
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
  const handle = await startServer({
    port: flags.port,
    host: flags.host,
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
    },
  });
  stopOnSignals(handle);
  announce(handle, flags.host);
}

// The server only evaluates and exports on TF.js's CPU backend; production mode skips debug checks
// and the banner suggesting tfjs-node (a native build this project does not need).
tf.enableProdMode();
main().catch((error: unknown) => {
  console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  // A bad configuration is a usage error, like a bad flag.
  process.exit(error instanceof IceConfigError ? 2 : 1);
});
