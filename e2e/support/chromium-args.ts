// The Chromium every e2e test runs, and its flags: for Playwright's launches (playwright.config.ts)
// and the tests' own (support/background-tab.ts).
import { existsSync } from "node:fs";

/**
 * run-e2e.mjs always sets CHROMIUM_PATH; when Playwright is run by hand, prefer Debian's Chromium and
 * otherwise (undefined) let Playwright use its own download.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? (existsSync("/usr/bin/chromium") ? "/usr/bin/chromium" : undefined);

/** Measured with Debian Chromium 156 (see e2e/README.md); WebGPU here is SwiftShader, in a secure context only. */
export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  // Host candidates as plain IPs: mDNS names would need multicast, which the namespace has not got.
  "--disable-features=WebRtcHideLocalIpsWithMdns",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
