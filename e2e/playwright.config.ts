// Playwright configuration. Run it through e2e/scripts/run-e2e.mjs, which picks the browser
// (CHROMIUM_PATH) and the network namespace; `npm run test:e2e` and `npm run bench:<name>` do.
import { defineConfig } from "@playwright/test";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "./support/chromium-args.ts";

/** One e2e test: SwiftShader WebGPU compiles shaders slowly, and WebRTC tests open several tabs. */
const TEST_TIMEOUT_MS = 90_000;
/** One benchmark: they move tens of MiB at ~7 MB/s, several times. */
const BENCH_TIMEOUT_MS = 600_000;
/** expect(...) retries and expect.poll. */
const EXPECT_TIMEOUT_MS = 20_000;
const NAVIGATION_TIMEOUT_MS = 30_000;
const ACTION_TIMEOUT_MS = 15_000;

export default defineConfig({
  outputDir: "test-results",
  // Two cores: tabs in one test already compete; parallel test files would only add noise and timeouts.
  workers: 1,
  fullyParallel: false,
  forbidOnly: Boolean(process.env.CI),
  retries: 0,
  reporter: [["list"]],
  timeout: TEST_TIMEOUT_MS,
  expect: { timeout: EXPECT_TIMEOUT_MS },
  use: {
    browserName: "chromium",
    headless: true,
    launchOptions: { executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS },
    navigationTimeout: NAVIGATION_TIMEOUT_MS,
    actionTimeout: ACTION_TIMEOUT_MS,
    trace: "retain-on-failure",
  },
  projects: [
    { name: "e2e", testDir: "tests", testMatch: /.*\.spec\.ts$/ },
    // Benchmarks are excluded from `test`; run-e2e.mjs `bench <name>` selects this project.
    { name: "bench", testDir: "bench", testMatch: /.*\.bench\.ts$/, timeout: BENCH_TIMEOUT_MS },
  ],
});
