import { resolve } from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

const root = import.meta.dirname;

// One Vite build for every page a browser opens, into dist/web: one folder per app (worker/index.html,
// worker/lab.html, dashboard/index.html) sharing /assets. The server maps them to their URLs
// (apps/server/src/server.ts WEB_PAGES): the worker page at /, the lab page (primitives for e2e
// tests and benchmarks) at /lab.html, the dashboard at /dashboard.
export default defineConfig({
  root: resolve(root, "apps"),
  publicDir: resolve(root, "public"),
  plugins: [react()],
  build: {
    outDir: resolve(root, "dist/web"),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      input: {
        worker: resolve(root, "apps/worker/index.html"),
        lab: resolve(root, "apps/worker/lab.html"),
        dashboard: resolve(root, "apps/dashboard/index.html"),
      },
    },
  },
  worker: { format: "es" },
  test: {
    root,
    include: ["packages/*/test/**/*.test.ts", "apps/*/test/**/*.test.ts"],
    testTimeout: 30_000,
  },
});
