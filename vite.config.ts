import { availableParallelism } from "node:os";
import { resolve } from "node:path";
import react from "@vitejs/plugin-react";
import { defineConfig, type ViteUserConfig } from "vitest/config";

const root = import.meta.dirname;
const shared = { root: resolve(root, "apps"), plugins: [react()], worker: { format: "es" as const } };

// Two Vite builds. The product (`vite build`, `npm run build`) is every page a volunteer or operator
// opens, into dist/web: one folder per app (worker/index.html, dashboard/index.html) sharing /assets.
// The lab (`vite build --mode lab`, `npm run build:lab`) is the page of primitives that e2e tests and
// benchmarks drive, into dist/lab under its own base /lab/: the product build holds none of it, and
// only a server started with --lab serves it. apps/server/src/server.ts maps both to their URLs.
export default defineConfig(({ mode }): ViteUserConfig =>
  mode === "lab"
    ? {
        ...shared,
        base: "/lab/",
        publicDir: false,
        build: {
          outDir: resolve(root, "dist/lab"),
          emptyOutDir: true,
          target: "es2022",
          chunkSizeWarningLimit: 4096,
          rollupOptions: { input: { lab: resolve(root, "apps/worker/lab.html") } },
        },
      }
    : {
        ...shared,
        publicDir: resolve(root, "public"),
        build: {
          outDir: resolve(root, "dist/web"),
          emptyOutDir: true,
          target: "es2022",
          chunkSizeWarningLimit: 4096,
          rollupOptions: {
            input: {
              worker: resolve(root, "apps/worker/index.html"),
              dashboard: resolve(root, "apps/dashboard/index.html"),
            },
          },
        },
        test: {
          root,
          include: ["packages/*/test/**/*.test.ts", "apps/*/test/**/*.test.ts"],
          testTimeout: 30_000,
          // Most test time is waiting (sockets, timers, child processes), so two files run side by side
          // even on two cores (vitest's default there is one): 91 s instead of 148 s for the suite.
          maxWorkers: Math.max(2, availableParallelism() - 1),
        },
      },
);
