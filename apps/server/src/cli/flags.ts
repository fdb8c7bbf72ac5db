// The server's command line: flags, their environment variables and defaults, and the usage text.
import { join, resolve } from "node:path";
import { ADMIN_TOKEN_ENV, AdminTokenError, validateAdminToken } from "../admin/token.ts";
import { DEFAULT_HEARTBEAT_TIMEOUT_MS, DEFAULT_HELLOS_PER_SECOND, DEFAULT_MAX_MEMBERS, MIN_HEARTBEAT_TIMEOUT_MS } from "../cluster/hub.ts";
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from "../log/logger.ts";
import { DEFAULT_JOB_FILE } from "../training/job-file.ts";
import { DEFAULT_CHECKPOINT_EVERY } from "../training/service.ts";
import { DEFAULT_SERVING } from "../serving/pool.ts";
import { MAX_PREDICT_ROWS } from "@crowdtrain/protocol";
import { DEFAULT_AUTOSCALER_CONFIG } from "@crowdtrain/serving";

/** Where `npm run build` puts the datasets (one directory each, see packages/training/DATASETS.md). */
const DEFAULT_DATASETS_DIR = join(import.meta.dirname, "../../../../dist/datasets");

const DEFAULT_PORT = 8080;
const DEFAULT_HOST = "0.0.0.0";

export const USAGE = `usage: crowdtrain-server [--port N] [--host ADDRESS] [--job FILE] [--datasets DIR] [--min-workers N] [--admin-token TOKEN]
                         [--data-dir DIR] [--checkpoint-every N] [--heartbeat-timeout-ms MS] [--join-token TOKEN]
                         [--allow-origin ORIGIN,...] [--max-members N] [--hellos-per-second N] [--ban-minutes N] [--lab]
                         [--tls-cert FILE --tls-key FILE | --tls-self-signed] [--trust-proxy ADDRESSES]
                         [--turn-url URL,... --turn-secret SECRET] [--ice-transport-policy all|relay]
                         [--log-format text|json] [--log-level debug|info|warn|error]
                         [--serve-min-tabs N] [--serve-max-tabs N] [--serve-max-batch N] [--serve-max-wait-ms MS] [--serve-deadline-ms MS]
                         [--serve-stable-window-ms MS] [--serve-scale-down-delay-ms MS]
  --port N         port to listen on, 0 picks a free one (env CROWDTRAIN_PORT, default ${DEFAULT_PORT})
  --host ADDRESS   address to bind (env CROWDTRAIN_HOST, default ${DEFAULT_HOST}: all interfaces)
  --job FILE       training job (env CROWDTRAIN_JOB, default apps/server/jobs/mnist-mlp.json)
  --datasets DIR   directory of built datasets (env CROWDTRAIN_DATASETS, default dist/datasets)
  --min-workers N  workers that must be ready before the first round (env CROWDTRAIN_MIN_WORKERS, default 1)
  --admin-token T  token of the dashboard's operator controls (env ${ADMIN_TOKEN_ENV}, default: random, printed at start)
  --data-dir DIR   checkpoints; the job resumes from the latest one there (env CROWDTRAIN_DATA_DIR, default ./data)
  --checkpoint-every N      checkpoint every N committed rounds and on SIGTERM (env CROWDTRAIN_CHECKPOINT_EVERY, default ${DEFAULT_CHECKPOINT_EVERY})
  --heartbeat-timeout-ms MS drop a worker whose socket is silent this long, at least ${MIN_HEARTBEAT_TIMEOUT_MS} (env CROWDTRAIN_HEARTBEAT_TIMEOUT_MS, default ${DEFAULT_HEARTBEAT_TIMEOUT_MS})
  --join-token T   make the job private: workers join only with ?join=T in their URL (env CROWDTRAIN_JOIN_TOKEN, default: public)
  --allow-origin O other web origins that may open the server's sockets, comma-separated (env CROWDTRAIN_ALLOW_ORIGIN, default: same origin only)
  --max-members N  workers the job admits at once (env CROWDTRAIN_MAX_MEMBERS, default ${DEFAULT_MAX_MEMBERS})
  --hellos-per-second N     new worker connections per address per second (env CROWDTRAIN_HELLOS_PER_SECOND, default ${DEFAULT_HELLOS_PER_SECOND})
  --ban-minutes N  an evicted member's address may not rejoin for N minutes, 0 = never ban (env CROWDTRAIN_BAN_MINUTES, default 60; loopback is never banned)
  --lab            also serve the lab page (/lab.html) for e2e tests and benchmarks; never on a public server
  --tls-cert FILE  serve HTTPS and WSS with this PEM certificate (chain) and --tls-key FILE, its private key
                   (env CROWDTRAIN_TLS_CERT, CROWDTRAIN_TLS_KEY); remote volunteers get WebGPU only over HTTPS
  --tls-self-signed         serve HTTPS with a self-signed certificate for this machine's names and addresses,
                   kept in DATA_DIR/tls (a LAN trial: each browser asks once to accept it)
  --trust-proxy A  believe X-Forwarded-For only from these reverse proxies: addresses, CIDR ranges, or loopback,
                   linklocal, uniquelocal, comma-separated (env CROWDTRAIN_TRUST_PROXY, default: none)
  --turn-url U     your TURN server (turn:host:3478, comma-separated) whose coturn static-auth-secret is
                   --turn-secret S: each worker gets its own credentials, valid 24 h (env CROWDTRAIN_TURN_URL, CROWDTRAIN_TURN_SECRET)
  --ice-transport-policy P  all (default) or relay: peers connect only through TURN, so no volunteer learns
                   another's address (env CROWDTRAIN_ICE_TRANSPORT_POLICY)
  --log-format F   cluster events on stdout as text (default) or json lines (env CROWDTRAIN_LOG_FORMAT)
  --log-level L    the least level logged: debug, info (default), warn, error (env CROWDTRAIN_LOG_LEVEL)
  --serve-min-tabs N        tabs kept serving POST /api/predict with no load, moved from training (env CROWDTRAIN_SERVE_MIN_TABS, default ${DEFAULT_AUTOSCALER_CONFIG.minTabs})
  --serve-max-tabs N        largest serving pool the autoscaler builds by moving trainers (?role=server tabs count in it),
                   0 = only ?role=server tabs serve (env CROWDTRAIN_SERVE_MAX_TABS, default ${DEFAULT_AUTOSCALER_CONFIG.maxTabs})
  --serve-max-batch N       rows a serving tab predicts in one call (env CROWDTRAIN_SERVE_MAX_BATCH, default ${DEFAULT_SERVING.maxBatch})
  --serve-max-wait-ms MS    longest a serving tab holds a request to fill a batch (env CROWDTRAIN_SERVE_MAX_WAIT_MS, default ${DEFAULT_SERVING.maxWaitMs})
  --serve-deadline-ms MS    a prediction not answered within this is answered 504 (env CROWDTRAIN_SERVE_DEADLINE_MS, default ${DEFAULT_SERVING.deadlineMs})
  --serve-stable-window-ms MS     the autoscaler's steady-state window; a panic ends after one calm window
                   (env CROWDTRAIN_SERVE_STABLE_WINDOW_MS, default ${DEFAULT_AUTOSCALER_CONFIG.stableWindowMs})
  --serve-scale-down-delay-ms MS  the pool shrinks only to the highest need of this trailing window
                   (env CROWDTRAIN_SERVE_SCALE_DOWN_DELAY_MS, default ${DEFAULT_AUTOSCALER_CONFIG.scaleDownDelayMs})
  CROWDTRAIN_ICE_SERVERS='[{"urls":"stun:stun.example.org:3478"}]' adds your own STUN/TURN servers`;

export class UsageError extends Error {}

export interface Flags {
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
  /** None: plain HTTP. */
  tls: { kind: "files"; cert: string; key: string } | { kind: "self-signed" } | undefined;
  trustProxy: string[];
  turn: { urls: string[]; secret: string } | undefined;
  iceTransportPolicy: "all" | "relay";
  logFormat: LogFormat;
  logLevel: LogLevel;
  serving: { minTabs: number; maxTabs: number; maxBatch: number; maxWaitMs: number; deadlineMs: number; stableWindowMs: number; scaleDownDelayMs: number };
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
  "--tls-cert",
  "--tls-key",
  "--trust-proxy",
  "--turn-url",
  "--turn-secret",
  "--ice-transport-policy",
  "--log-format",
  "--log-level",
  "--serve-min-tabs",
  "--serve-max-tabs",
  "--serve-max-batch",
  "--serve-max-wait-ms",
  "--serve-deadline-ms",
  "--serve-stable-window-ms",
  "--serve-scale-down-delay-ms",
] as const;
type FlagName = (typeof FLAG_NAMES)[number];

export function parseFlags(argv: string[], env: NodeJS.ProcessEnv): Flags | "help" {
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
    "--tls-cert": env.CROWDTRAIN_TLS_CERT === "" ? undefined : env.CROWDTRAIN_TLS_CERT,
    "--tls-key": env.CROWDTRAIN_TLS_KEY === "" ? undefined : env.CROWDTRAIN_TLS_KEY,
    "--trust-proxy": env.CROWDTRAIN_TRUST_PROXY === "" ? undefined : env.CROWDTRAIN_TRUST_PROXY,
    "--turn-url": env.CROWDTRAIN_TURN_URL === "" ? undefined : env.CROWDTRAIN_TURN_URL,
    "--turn-secret": env.CROWDTRAIN_TURN_SECRET === "" ? undefined : env.CROWDTRAIN_TURN_SECRET,
    "--ice-transport-policy": env.CROWDTRAIN_ICE_TRANSPORT_POLICY === "" ? undefined : env.CROWDTRAIN_ICE_TRANSPORT_POLICY,
    "--log-format": env.CROWDTRAIN_LOG_FORMAT === "" ? undefined : env.CROWDTRAIN_LOG_FORMAT,
    "--log-level": env.CROWDTRAIN_LOG_LEVEL === "" ? undefined : env.CROWDTRAIN_LOG_LEVEL,
    "--serve-min-tabs": env.CROWDTRAIN_SERVE_MIN_TABS,
    "--serve-max-tabs": env.CROWDTRAIN_SERVE_MAX_TABS,
    "--serve-max-batch": env.CROWDTRAIN_SERVE_MAX_BATCH,
    "--serve-max-wait-ms": env.CROWDTRAIN_SERVE_MAX_WAIT_MS,
    "--serve-deadline-ms": env.CROWDTRAIN_SERVE_DEADLINE_MS,
    "--serve-stable-window-ms": env.CROWDTRAIN_SERVE_STABLE_WINDOW_MS,
    "--serve-scale-down-delay-ms": env.CROWDTRAIN_SERVE_SCALE_DOWN_DELAY_MS,
  };
  let lab = false;
  let selfSigned = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--help" || arg === "-h") return "help";
    if (arg === "--lab") {
      lab = true;
      continue;
    }
    if (arg === "--tls-self-signed") {
      selfSigned = true;
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
    heartbeatTimeoutMs: heartbeatTimeout(values["--heartbeat-timeout-ms"] ?? String(DEFAULT_HEARTBEAT_TIMEOUT_MS)),
    joinToken: tokenFlag("--join-token", values["--join-token"]),
    allowOrigins: originsFlag(values["--allow-origin"]),
    maxMembers: positiveInteger("--max-members", values["--max-members"] ?? String(DEFAULT_MAX_MEMBERS)),
    hellosPerSecond: positiveInteger("--hellos-per-second", values["--hellos-per-second"] ?? String(DEFAULT_HELLOS_PER_SECOND)),
    banMinutes: nonNegativeInteger("--ban-minutes", values["--ban-minutes"] ?? "60"),
    lab,
    tls: tlsFlags(values["--tls-cert"], values["--tls-key"], selfSigned),
    trustProxy: listFlag(values["--trust-proxy"]),
    turn: turnFlags(values["--turn-url"], values["--turn-secret"]),
    iceTransportPolicy: policyFlag(values["--ice-transport-policy"]),
    logFormat: oneOf("--log-format", LOG_FORMATS, values["--log-format"] ?? "text"),
    logLevel: oneOf("--log-level", LOG_LEVELS, values["--log-level"] ?? "info"),
    serving: servingFlags(values),
  };
}

function heartbeatTimeout(raw: string): number {
  const ms = positiveInteger("--heartbeat-timeout-ms", raw);
  if (ms < MIN_HEARTBEAT_TIMEOUT_MS) throw new UsageError(`--heartbeat-timeout-ms must be at least ${MIN_HEARTBEAT_TIMEOUT_MS}, got ${ms}`);
  return ms;
}

function servingFlags(values: Partial<Record<FlagName, string>>): Flags["serving"] {
  const minTabs = nonNegativeInteger("--serve-min-tabs", values["--serve-min-tabs"] ?? String(DEFAULT_AUTOSCALER_CONFIG.minTabs));
  const maxTabs = nonNegativeInteger("--serve-max-tabs", values["--serve-max-tabs"] ?? String(DEFAULT_AUTOSCALER_CONFIG.maxTabs));
  if (minTabs > maxTabs) throw new UsageError(`--serve-min-tabs (${minTabs}) is above --serve-max-tabs (${maxTabs})`);
  const maxBatch = positiveInteger("--serve-max-batch", values["--serve-max-batch"] ?? String(DEFAULT_SERVING.maxBatch));
  if (maxBatch > MAX_PREDICT_ROWS) throw new UsageError(`--serve-max-batch must be at most ${MAX_PREDICT_ROWS}, got ${maxBatch}`);
  const maxWaitMs = nonNegativeInteger("--serve-max-wait-ms", values["--serve-max-wait-ms"] ?? String(DEFAULT_SERVING.maxWaitMs));
  if (maxWaitMs > 1_000) throw new UsageError(`--serve-max-wait-ms must be at most 1000, got ${maxWaitMs}`);
  const deadlineMs = positiveInteger("--serve-deadline-ms", values["--serve-deadline-ms"] ?? String(DEFAULT_SERVING.deadlineMs));
  const stableWindowMs = positiveInteger("--serve-stable-window-ms", values["--serve-stable-window-ms"] ?? String(DEFAULT_AUTOSCALER_CONFIG.stableWindowMs));
  if (stableWindowMs < DEFAULT_AUTOSCALER_CONFIG.panicWindowMs) throw new UsageError(`--serve-stable-window-ms must be at least the ${DEFAULT_AUTOSCALER_CONFIG.panicWindowMs} ms panic window, got ${stableWindowMs}`);
  const scaleDownDelayMs = nonNegativeInteger("--serve-scale-down-delay-ms", values["--serve-scale-down-delay-ms"] ?? String(DEFAULT_AUTOSCALER_CONFIG.scaleDownDelayMs));
  return { minTabs, maxTabs, maxBatch, maxWaitMs, deadlineMs, stableWindowMs, scaleDownDelayMs };
}

function turnFlags(url: string | undefined, secret: string | undefined): Flags["turn"] {
  if (url === undefined && secret === undefined) return undefined;
  if (url === undefined || secret === undefined) throw new UsageError("--turn-url and --turn-secret go together: your TURN server and the secret it shares with this server");
  return { urls: listFlag(url), secret };
}

function oneOf<T extends string>(flag: string, allowed: readonly T[], value: string): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new UsageError(`${flag} must be one of ${allowed.join(", ")}, got ${JSON.stringify(value)}`);
}

function policyFlag(value: string | undefined): Flags["iceTransportPolicy"] {
  if (value === undefined || value === "all" || value === "relay") return value ?? "all";
  throw new UsageError(`--ice-transport-policy must be all or relay, got ${JSON.stringify(value)}`);
}

function tlsFlags(cert: string | undefined, key: string | undefined, selfSigned: boolean): Flags["tls"] {
  if (selfSigned && (cert !== undefined || key !== undefined)) throw new UsageError("--tls-self-signed makes its own certificate: give it, or --tls-cert and --tls-key, not both");
  if (selfSigned) return { kind: "self-signed" };
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) throw new UsageError("--tls-cert and --tls-key go together: the certificate and its private key");
  return { kind: "files", cert: resolve(cert), key: resolve(key) };
}

function listFlag(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(",").map((item) => item.trim()).filter(Boolean);
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

