// Thin-link emulation on the e2e namespace's loopback (DESIGN.md §4). Inside the namespace `lo`
// carries everything: the server's HTTP/WebSocket and the tabs' WebRTC (their host candidate
// 10.88.0.1 is a local address, routed via lo), so one token bucket on lo caps every link at once.
// Plain JS so that run-e2e.mjs (plain Node) and TypeScript specs (link-profile.ts) share it.
// This kernel has no netem: only the rate can be shaped, no latency or loss can be added.
import { spawnSync } from "node:child_process";

/** Set by run-e2e.mjs inside the namespace it made; anywhere else lo is the host's own. */
const NETNS_ENV = "CROWDTRAIN_E2E_NETNS";
/** Linux's default loopback MTU, restored by `lan`. */
const LOOPBACK_MTU = 65536;
/** A token bucket's burst must exceed the largest packet: with lo's 64 KiB MTU tbf drops everything. */
const SHAPED_MTU = 1500;

/** Rate of each profile in Mbit/s; null: no cap. */
export const LINK_PROFILES = Object.freeze({ lan: null, thin: 20, bad: 5 });
export const LINK_PROFILE_NAMES = Object.freeze(Object.keys(LINK_PROFILES));

/** Throws unless `name` is a profile, listing the valid ones. */
export function checkLinkProfile(name) {
  if (!Object.hasOwn(LINK_PROFILES, name)) {
    throw new Error(`unknown link profile ${JSON.stringify(name)}; valid: ${LINK_PROFILE_NAMES.join(", ")}`);
  }
  return name;
}

/** Whether this process runs in the e2e namespace, where changing lo cannot touch the host. */
export function insideE2eNamespace(env = process.env) {
  return env[NETNS_ENV] === "inside";
}

function run(command, args) {
  const result = spawnSync(command, args, { encoding: "utf8" });
  if (result.error || result.status !== 0) {
    const why = result.error?.message ?? (result.stderr.trim() || `exit ${result.status ?? result.signal}`);
    throw new Error(`link profile: \`${command} ${args.join(" ")}\` failed: ${why}`);
  }
  return result.stdout;
}

/** Whether lo has a root qdisc of ours (a fresh namespace has none, and `tc qdisc del` then fails). */
function loHasTokenBucket() {
  return /\btbf\b/.test(run("tc", ["qdisc", "show", "dev", "lo", "root"]));
}

/**
 * Applies `profile` to lo: a token bucket at its rate, or (lan) no qdisc and the default MTU.
 * Refuses outside the e2e namespace; throws on any failing command with its stderr.
 */
export function applyLinkProfile(profile, env = process.env) {
  const rateMbit = LINK_PROFILES[checkLinkProfile(profile)];
  if (!insideE2eNamespace(env)) {
    throw new Error(`link profiles change lo and run only inside the e2e network namespace (${NETNS_ENV}=inside, set by run-e2e.mjs); refusing to touch this machine's loopback`);
  }
  if (rateMbit === null) {
    if (loHasTokenBucket()) run("tc", ["qdisc", "del", "dev", "lo", "root"]);
    run("ip", ["link", "set", "lo", "mtu", String(LOOPBACK_MTU)]);
    return;
  }
  run("ip", ["link", "set", "lo", "mtu", String(SHAPED_MTU)]);
  // burst 32kb > MTU; latency 400ms bounds the queue (rate x 0.4 s) before tbf drops.
  run("tc", ["qdisc", "replace", "dev", "lo", "root", "tbf", "rate", `${rateMbit}mbit`, "burst", "32kb", "latency", "400ms"]);
}
