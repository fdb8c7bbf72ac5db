// One server per test file on a fresh MNIST dataset: built in a temporary directory before the
// file's tests, the server started on it, both closed and removed after them.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { afterAll, beforeAll } from "vitest";
import { startServer, type ServerHandle } from "../../src/server.ts";
import type { TrainingOptions } from "../../src/training/service.ts";

/** Building the dataset and starting the server. */
const START_TIMEOUT_MS = 60_000;

export type JobServer = { readonly server: ServerHandle; readonly datasets: string };

/** Registers the file's beforeAll/afterAll; the getters are valid inside its tests. */
export function useJobServer(training: Omit<TrainingOptions, "datasetsDir">): JobServer {
  let datasets: string | undefined;
  let server: ServerHandle | undefined;
  beforeAll(async () => {
    await tf.setBackend("cpu");
    datasets = mkdtempSync(join(tmpdir(), "crowdtrain-datasets-"));
    await buildMnistDataset(join(datasets, "mnist"));
    server = await startServer({ port: 0, training: { ...training, datasetsDir: datasets } });
  }, START_TIMEOUT_MS);
  afterAll(async () => {
    await server?.close();
    if (datasets !== undefined) rmSync(datasets, { recursive: true, force: true });
  });
  return {
    get server() {
      if (server === undefined) throw new Error("the job server is used before its beforeAll ran");
      return server;
    },
    get datasets() {
      if (datasets === undefined) throw new Error("the datasets are used before their beforeAll ran");
      return datasets;
    },
  };
}
