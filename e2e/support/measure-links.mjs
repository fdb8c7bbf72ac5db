#!/usr/bin/env node
// Measures what each link profile really gives: one TCP transfer over loopback per profile, in a
// network namespace of its own (re-runs itself under `unshare -n`, as run-e2e.mjs does), so the
// host's lo is never shaped. Root on Linux only.
//   node e2e/support/measure-links.mjs [profile...]     (default: lan thin bad)
import { spawnSync } from "node:child_process";
import { createConnection, createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { applyLinkProfile, checkLinkProfile, insideE2eNamespace, LINK_PROFILE_NAMES, LINK_PROFILES } from "./link-profiles.mjs";

/** Bytes sent per profile: a few seconds at each rate, enough to swamp the 32 KB burst. */
const TRANSFER_BYTES = { lan: 256 << 20, thin: 8 << 20, bad: 2 << 20 };
/** 2 MiB at 5 Mbit/s is 3.4 s; anything past this is a stall, not a slow link. */
const TRANSFER_TIMEOUT_MS = 60_000;
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

/** Sends `bytes` from a client to a server on 127.0.0.1; resolves with the receiver's bytes per second. */
function transfer(bytes) {
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`transfer of ${bytes} bytes not done in ${TRANSFER_TIMEOUT_MS} ms`)), TRANSFER_TIMEOUT_MS);
    const server = createServer((socket) => {
      let received = 0;
      let started;
      socket.on("data", (data) => {
        started ??= performance.now();
        received += data.length;
        if (received < bytes) return;
        const seconds = (performance.now() - started) / 1000;
        clearTimeout(timer);
        socket.destroy();
        server.close();
        done(received / seconds);
      });
      socket.on("error", fail);
    });
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const client = createConnection(server.address().port, "127.0.0.1");
      client.on("error", (error) => {
        // The receiver closes the socket once it has everything; a reset after that is expected.
        if (error.code !== "ECONNRESET" && error.code !== "EPIPE") fail(error);
      });
      let sent = 0;
      const pump = () => {
        while (sent < bytes) {
          sent += CHUNK.length;
          if (!client.write(CHUNK)) return client.once("drain", pump);
        }
        return undefined;
      };
      client.on("connect", pump);
    });
  });
}

async function measureInside(profiles) {
  const up = spawnSync("ip", ["link", "set", "lo", "up"], { encoding: "utf8" });
  if (up.status !== 0) throw new Error(`ip link set lo up: ${up.stderr.trim()}`);
  try {
    for (const profile of profiles) {
      applyLinkProfile(profile);
      const rate = await transfer(TRANSFER_BYTES[profile]);
      const cap = LINK_PROFILES[profile];
      console.log(`${profile.padEnd(5)} cap ${cap === null ? "none" : `${cap} Mbit/s (${(cap / 8).toFixed(2)} MB/s)`}: ${(rate / 1e6).toFixed(2)} MB/s measured`);
    }
  } finally {
    applyLinkProfile("lan");
  }
}

const profiles = process.argv.slice(2).map(checkLinkProfile);
if (insideE2eNamespace()) {
  await measureInside(profiles.length > 0 ? profiles : LINK_PROFILE_NAMES);
} else {
  const self = fileURLToPath(import.meta.url);
  const child = spawnSync("unshare", ["-n", "--", process.execPath, self, ...profiles], { stdio: "inherit", env: { ...process.env, CROWDTRAIN_E2E_NETNS: "inside" } });
  if (child.error) throw child.error;
  process.exitCode = child.status ?? 1;
}
