import { resolve } from "node:path";
import { defineConfig } from "vitest/config";

const root = import.meta.dirname;

// One Vite build for every page a browser opens. The server serves dist/web:
// the worker page at /, the lab page (primitives for e2e tests and benchmarks) at /lab.html.
export default defineConfig({
  root: resolve(root, "apps/worker"),
  publicDir: resolve(root, "public"),
  build: {
    outDir: resolve(root, "dist/web"),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 4096,
    rollupOptions: {
      input: {
        worker: resolve(root, "apps/worker/index.html"),
        lab: resolve(root, "apps/worker/lab.html"),
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
