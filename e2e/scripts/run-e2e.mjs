#!/usr/bin/env node
// Entry point of every e2e run: resolves the browser, isolates the network, then runs Playwright.
//   node e2e/scripts/run-e2e.mjs test [playwright args...]
//   node e2e/scripts/run-e2e.mjs bench <name> [playwright args...]   (runs e2e/bench/<name>.bench.ts)
//   CROWDTRAIN_LINK=thin node e2e/scripts/run-e2e.mjs test   (caps every link of the run: lan, thin, bad)
import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants as fsConstants, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { constants as osConstants } from "node:os";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { applyLinkProfile, checkLinkProfile, LINK_PROFILES } from "../support/link-profiles.mjs";

const SELF = fileURLToPath(import.meta.url);
const REPO_ROOT = resolve(import.meta.dirname, "../..");
const CONFIG = "e2e/playwright.config.ts";
/** Set inside the namespace (value "inside"); "off" runs without one even as root. */
const NETNS_ENV = "CROWDTRAIN_E2E_NETNS";
/** DESIGN.md §4: loopback up, one veth pair with a private address and a default route, so Chromium gathers a host candidate. */
const NETNS_SETUP = [
  ["link", "set", "lo", "up"],
  ["link", "add", "ct0", "type", "veth", "peer", "name", "ct1"],
  ["addr", "add", "10.88.0.1/24", "dev", "ct0"],
  ["link", "set", "ct0", "up"],
  ["link", "set", "ct1", "up"],
  ["route", "add", "default", "dev", "ct0"],
];
/** Link profile for the whole run (lan, thin, bad: see e2e/support/link-profiles.mjs); needs the namespace. */
const LINK_ENV = "CROWDTRAIN_LINK";
const USAGE = "usage: run-e2e.mjs test [playwright args...] | bench <name> [playwright args...]";

function fail(message, code = 1) {
  console.error(`run-e2e: ${message}`);
  process.exit(code);
}

function onPath(command) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    try {
      accessSync(join(dir, command), fsConstants.X_OK);
      return true;
    } catch (error) {
      if (error.code !== "ENOENT" && error.code !== "EACCES" && error.code !== "ENOTDIR") throw error;
    }
  }
  return false;
}

/** CHROMIUM_PATH, else Debian's /usr/bin/chromium, else Playwright's own download. */
async function resolveChromium() {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) {
    if (!existsSync(fromEnv)) fail(`CHROMIUM_PATH=${fromEnv} does not exist`);
    return { path: fromEnv, source: "CHROMIUM_PATH" };
  }
  if (existsSync("/usr/bin/chromium")) return { path: "/usr/bin/chromium", source: "Debian chromium" };
  const { chromium } = await import("@playwright/test");
  const bundled = chromium.executablePath();
  if (bundled && existsSync(bundled)) return { path: bundled, source: "Playwright's chromium" };
  return fail(
    "no Chromium found. Get one with `apt-get install chromium` (Debian/Ubuntu), or `npx playwright install chromium`, " +
      "or point CHROMIUM_PATH at a Chromium/Chrome binary.",
  );
}

function playwrightArgs(argv) {
  const [mode, ...rest] = argv;
  if (mode === "test") return ["test", "-c", CONFIG, "--project=e2e", ...rest];
  if (mode === "bench") {
    const [name, ...extra] = rest;
    if (!name || name.startsWith("-")) fail(`bench needs a name\n${USAGE}`, 2);
    const spec = `e2e/bench/${name}.bench.ts`;
    if (!existsSync(join(REPO_ROOT, spec))) fail(`no benchmark ${spec}`, 2);
    return ["test", "-c", CONFIG, "--project=bench", spec, ...extra];
  }
  return fail(USAGE, 2);
}

/** After forwarding a signal, how long the child may take to stop (Playwright tears fixtures down) before SIGKILL. */
const STOP_TIMEOUT_MS = 30_000;

/**
 * Runs a child with inherited stdio and passes our signals on. `gracefulSignal` replaces whatever
 * we received: Playwright's runner stops gracefully only on SIGINT and dies outright on SIGTERM,
 * leaving its workers behind. When the child is gone we end the way we were asked to (re-raising
 * the signal we got), or with the child's exit status.
 */
function runForwarding(command, args, env, gracefulSignal) {
  // Own process group: a terminal Ctrl-C reaches only us, and we pass it on exactly once
  // (Playwright treats a second SIGINT as "abort now, skip teardown").
  const child = spawn(command, args, { cwd: REPO_ROOT, env, stdio: "inherit", detached: true });
  let received = null;
  let killTimer = null;
  const forward = (signal) => {
    received ??= signal;
    child.kill(gracefulSignal ?? signal);
    killTimer ??= setTimeout(() => {
      console.error(`run-e2e: ${command} still running ${STOP_TIMEOUT_MS} ms after ${signal}; killing its process group`);
      killGroup(child.pid);
    }, STOP_TIMEOUT_MS);
  };
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const signal of signals) process.on(signal, forward);
  child.once("error", (error) => fail(`could not start ${command}: ${error.message}`));
  child.once("exit", (code, signal) => {
    clearTimeout(killTimer);
    for (const s of signals) process.off(s, forward);
    const endedBy = received ?? signal;
    if (endedBy) {
      process.exitCode = 128 + (osConstants.signals[endedBy] ?? 0);
      process.kill(process.pid, endedBy);
    } else {
      process.exitCode = code ?? 1;
    }
  });
}

function killGroup(pid) {
  try {
    process.kill(-pid, "SIGKILL");
  } catch (error) {
    // ESRCH: the group is already gone, which is what we wanted.
    if (error.code !== "ESRCH") throw error;
  }
}

function canIsolate() {
  if (process.env[NETNS_ENV] === "off") return "disabled by CROWDTRAIN_E2E_NETNS=off";
  if (process.platform !== "linux") return `not Linux (${process.platform})`;
  if (process.getuid?.() !== 0) return "not root";
  if (!onPath("unshare") || !onPath("ip")) return "unshare or ip (iproute2) is missing";
  return null;
}

function setUpNamespace() {
  for (const args of NETNS_SETUP) {
    const result = spawnSync("ip", args, { encoding: "utf8" });
    if (result.error || result.status !== 0) {
      fail(`network namespace setup failed at \`ip ${args.join(" ")}\`: ${result.error?.message ?? result.stderr.trim()}`);
    }
  }
}

/** CROWDTRAIN_LINK, checked before anything starts; undefined when unset. */
function requestedLinkProfile() {
  const name = process.env[LINK_ENV];
  if (name === undefined || name === "") return undefined;
  try {
    return checkLinkProfile(name);
  } catch (error) {
    return fail(`${LINK_ENV}: ${error.message}`, 2);
  }
}

function applyRunLinkProfile(profile) {
  try {
    applyLinkProfile(profile);
  } catch (error) {
    fail(error.message);
  }
  const rate = LINK_PROFILES[profile];
  console.log(`run-e2e: link profile ${profile} (${rate === null ? "no cap" : `lo capped at ${rate} Mbit/s, no added latency`})`);
}

async function main() {
  const argv = process.argv.slice(2);
  const pwArgs = playwrightArgs(argv);
  const link = requestedLinkProfile();
  const browser = await resolveChromium();
  const env = { ...process.env, CHROMIUM_PATH: browser.path };
  if (process.env[NETNS_ENV] === "inside") {
    setUpNamespace();
    if (link !== undefined) applyRunLinkProfile(link);
  } else {
    const why = canIsolate();
    // Shaping needs our own lo; without the namespace it would be the host's.
    if (why !== null && link !== undefined && link !== "lan") fail(`${LINK_ENV}=${link} needs the network namespace, and there is none here (${why})`);
    if (why === null) {
      const probe = spawnSync("unshare", ["-n", "true"], { encoding: "utf8" });
      if (probe.status !== 0) {
        fail(`cannot create a network namespace (${probe.stderr.trim() || probe.error?.message}); set ${NETNS_ENV}=off to run without one`);
      }
      console.log("run-e2e: running inside a fresh network namespace (unshare -n, veth ct0 10.88.0.1)");
      runForwarding("unshare", ["-n", "--", process.execPath, SELF, ...argv], { ...env, [NETNS_ENV]: "inside" }, null);
      return;
    }
    console.log(`run-e2e: no network namespace (${why}); running on the host network as is`);
  }
  console.log(`run-e2e: browser ${browser.path} (${browser.source})`);
  const cli = createRequire(import.meta.url).resolve("@playwright/test/cli");
  runForwarding(process.execPath, [cli, ...pwArgs], env, "SIGINT");
}

main().catch((error) => fail(error?.stack ?? String(error)));
