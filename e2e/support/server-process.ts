// The Crowdtrain server as a child process, started the way an operator starts it (the CLI), so
// tests can also kill and restart it.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

/** From spawn to the CROWDTRAIN_READY line: tsx compiles the server on the way. */
const SERVER_READY_TIMEOUT_MS = 30_000;
/** From a signal to the process's exit; the server closes itself within 10 s before exiting anyway. */
const SERVER_EXIT_TIMEOUT_MS = 15_000;
const READY_PREFIX = "CROWDTRAIN_READY ";
const REPO_ROOT = resolve(import.meta.dirname, "../..");

export interface ServerProcess {
  /** Base URL without trailing slash; the same across restart(). */
  readonly url: string;
  /** The running server's process id (a benchmark reads its CPU time and memory from /proc). */
  readonly pid: number | undefined;
  /** Sends `signal` and waits for the exit. Kills for good after SERVER_EXIT_TIMEOUT_MS. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the server if running and starts it again on the same port. */
  restart(): Promise<void>;
  /** kill(), then removes the data directory this helper made for it (if it made one). */
  dispose(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => child.once("exit", () => done()));
}

/** Spawns the CLI, forwards its output with a prefix, and resolves once it prints CROWDTRAIN_READY. */
async function spawnServer(host: string, port: number, args: readonly string[]): Promise<{ child: ChildProcess; url: string; port: number }> {
  // `node --import tsx` rather than `npx tsx`: one process, so signals reach the server itself.
  // --lab: e2e tests and benchmarks use the lab page, which a default server does not serve.
  // --log-level warn: strikes, evictions and errors reach the test's output, not every join and
  // commit (a later flag wins); CROWDTRAIN_E2E_LOG_LEVEL=info shows them all, to diagnose a failing run.
  const logLevel = process.env.CROWDTRAIN_E2E_LOG_LEVEL ?? "warn";
  // CROWDTRAIN_SERVER_NODE_ARGS: extra flags for the server's node (say "--cpu-prof --cpu-prof-dir=/tmp/prof" to
  // profile it under a benchmark; node refuses --cpu-prof in NODE_OPTIONS).
  const nodeArgs = (process.env.CROWDTRAIN_SERVER_NODE_ARGS ?? "").split(" ").filter((arg) => arg !== "");
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", "apps/server/src/main.ts", "--port", String(port), "--host", host, "--lab", "--log-level", logLevel, ...args], {
    cwd: REPO_ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log: string[] = [];
  const stderr = createInterface({ input: child.stderr });
  stderr.on("line", (line) => {
    log.push(line);
    process.stderr.write(`[server] ${line}\n`);
  });
  const stdout = createInterface({ input: child.stdout });
  const ready = new Promise<{ url: string; port: number }>((done, fail) => {
    stdout.on("line", (line) => {
      log.push(line);
      if (line.startsWith(READY_PREFIX)) done(JSON.parse(line.slice(READY_PREFIX.length)) as { url: string; port: number });
      else process.stdout.write(`[server] ${line}\n`);
    });
    child.once("exit", (code, signal) => fail(new Error(`server exited (${signal ?? code}) before it was ready:\n${log.join("\n")}`)));
    child.once("error", fail);
  });
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_done, fail) => {
    timer = setTimeout(
      () => fail(new Error(`server not ready within ${SERVER_READY_TIMEOUT_MS} ms:\n${log.join("\n")}`)),
      SERVER_READY_TIMEOUT_MS,
    );
  });
  try {
    const announced = await Promise.race([ready, expired]);
    return { child, ...announced };
  } catch (error) {
    child.kill("SIGKILL");
    await exited(child);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((done) => (timer = setTimeout(() => done("late"), SERVER_EXIT_TIMEOUT_MS)));
  const outcome = await Promise.race([exited(child), late]);
  clearTimeout(timer);
  if (outcome === "late") {
    child.kill("SIGKILL");
    await exited(child);
    throw new Error(`server ignored ${signal} for ${SERVER_EXIT_TIMEOUT_MS} ms and was killed`);
  }
}

/**
 * Starts the server on `host` (port picked by the OS) with extra CLI `args`. The caller owns it:
 * `kill()` at the end. restart() keeps the port and the args.
 */
export async function startServerProcess(host: string, extraArgs: readonly string[] = []): Promise<ServerProcess> {
  // Checkpoints go to a directory of this server's own unless the test names one: the default
  // (./data) would make the next run resume a finished job.
  const ownDataDir = extraArgs.includes("--data-dir") ? undefined : mkdtempSync(join(tmpdir(), "crowdtrain-e2e-data-"));
  const args = ownDataDir === undefined ? extraArgs : [...extraArgs, "--data-dir", ownDataDir];
  let current: Awaited<ReturnType<typeof spawnServer>>;
  try {
    current = await spawnServer(host, 0, args);
  } catch (error) {
    if (ownDataDir !== undefined) rmSync(ownDataDir, { recursive: true, force: true });
    throw error;
  }
  const { url, port } = current;
  const kill = (signal: NodeJS.Signals = "SIGTERM") => stop(current.child, signal);
  return {
    url,
    get pid() {
      return current.child.pid;
    },
    kill,
    async dispose() {
      await kill();
      if (ownDataDir !== undefined) rmSync(ownDataDir, { recursive: true, force: true });
    },
    async restart() {
      await stop(current.child, "SIGTERM");
      current = await spawnServer(host, port, args);
    },
  };
}
