// Fixture (run in its own process by regressions.test.ts): starts a server with a job whose state is
// too big to ever upload. startServer must refuse it, and must leave nothing running behind (no
// timer, no socket), so this process exits by itself after printing "refused".
import { parseJob } from "@crowdtrain/protocol";
import { startServer } from "../../src/server.ts";

const datasetsDir = process.env.CROWDTRAIN_HARDENING_DATASETS;
if (datasetsDir === undefined) throw new Error("CROWDTRAIN_HARDENING_DATASETS is not set");
const job = parseJob({
  name: "too-big",
  dataset: "mnist",
  model: { kind: "mlp", hidden: [5000, 5000] },
  optimizer: { kind: "sgd", learningRate: 0.1 },
  batchSize: 20,
  rounds: 1,
});

try {
  const handle = await startServer({ port: 0, training: { job, datasetsDir } });
  console.log("started (it should have been refused)");
  await handle.close();
} catch (error) {
  console.log(/MiB/.test(String(error)) ? "refused" : `failed otherwise: ${String(error)}`);
}
