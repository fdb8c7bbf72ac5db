import { stageSlices, stageState } from "@crowdtrain/pipeline";
import { parseJob, pipelinePosition, type RoundMessage } from "@crowdtrain/protocol";
import { combineLayerHashes, createOptimizer, decodeState, encodeState, layerHashes, modelLayers, pipelineStateHash, type ModelState } from "@crowdtrain/training";
import { describe, expect, it } from "vitest";
import { useJobServer } from "./support/job-server.ts";
import { ScriptedWorker } from "./support/scripted-worker.ts";

/** Every wait on the server in this file. */
const WAIT_MS = 10_000;
const job = parseJob({
  name: "pipeline-server-test",
  dataset: "mnist",
  model: { kind: "mlp", hidden: [8, 6] },
  optimizer: { kind: "adam", learningRate: 0.01 },
  batchSize: 20,
  rounds: 2,
  parallelism: { stages: 2, microBatches: 2 },
});
const layers = modelLayers(job.model, [28, 28, 1], 10);
const params = layers.map((layer) => layer.params);

const host = useJobServer({ job, minWorkers: 4 });

/**
 * A pipeline member's round without a browser: its stage's part of `whole` stepped by Adam with a
 * gradient that depends only on the round and stage (so replicas agree), its layers' hashes reported.
 */
function stageStep(worker: ScriptedWorker, whole: ModelState, round: RoundMessage): { part: ModelState; layers: string[] } {
  const plan = round.pipeline!;
  const { stage } = pipelinePosition(plan, worker.peerId)!;
  const range = plan.stages[stage]!;
  const slice = stageSlices(layers, plan.stages)[stage]!;
  const own = stageState(whole, slice);
  const optimizer = createOptimizer(job.optimizer, slice.length);
  optimizer.restore(own.optimizer);
  const weights = own.weights.slice();
  optimizer.step(weights, new Float32Array(slice.length).fill((round.round + stage) / 100));
  const stepped = optimizer.state();
  const hashes = layerHashes(weights, stepped, params.slice(range.from, range.to));
  const hash = combineLayerHashes(hashes);
  worker.send({ type: "result", attempt: round.attempt, hash, layerHashes: hashes, samples: round.lease.length, loss: 1 + stage, timings: { computeMs: 5, readbackMs: 1, allReduceMs: 2, updateMs: 1 }, bytesSent: 1, bytesReceived: 1 });
  return { part: { round: round.round, hash, weights, optimizer: stepped }, layers: hashes };
}

describe("a pipeline job on the server", () => {
  it("runs 2 replicas × 2 stages, takes each stage's part from its uploader, and assembles the whole committed state", async () => {
    const workers = await Promise.all(Array.from({ length: 4 }, () => new ScriptedWorker(host.server.url).join()));
    const initial = await workers[0]!.sync();
    await Promise.all(workers.slice(1).map((w) => w.sync()));
    // Round 0's hash is the layered one: the hash every later round commits on.
    expect(initial.hash).toBe(pipelineStateHash(initial.weights, initial.optimizer, params));
    let whole = initial;
    // Attempt 1: replica 0's first-stage member uploads a part with a flipped weight, which fails the
    // server's check against its header's hash: the round aborts and runs again.
    {
      const messages = await Promise.all(workers.map((w) => w.next("round")));
      const steps = workers.map((w, k) => stageStep(w, whole, messages[k]!));
      const k = messages.findIndex((m) => m.upload && pipelinePosition(m.pipeline!, workers[messages.indexOf(m)]!.peerId)?.stage === 0);
      const forged = { ...steps[k]!.part, weights: steps[k]!.part.weights.slice() };
      forged.weights[0] = forged.weights[0]! + 1;
      expect((await workers[k]!.upload(1, encodeState(forged))).status).toBe(422);
      await workers[k]!.next("abort");
    }
    for (let round = 1; round <= 2; round++) {
      const messages = await Promise.all(workers.map((w) => w.next("round")));
      expect(messages.map((m) => m.round)).toEqual([round, round, round, round]);
      const plan = messages[0]!.pipeline!;
      expect(plan.replicas).toHaveLength(2);
      expect(plan.stages).toHaveLength(2);
      const steps = workers.map((w, k) => stageStep(w, whole, messages[k]!));
      // In stage order (the plan places members by their ids, so not in join order).
      const uploaders = workers.filter((_, k) => messages[k]!.upload).sort((x, y) => pipelinePosition(plan, x.peerId)!.stage - pipelinePosition(plan, y.peerId)!.stage);
      expect(uploaders.map((w) => pipelinePosition(plan, w.peerId))).toEqual([
        { replica: 0, stage: 0 },
        { replica: 0, stage: 1 },
      ]);
      // Only a stage's uploader may send its part.
      const other = workers.find((w) => !uploaders.includes(w))!;
      expect((await other.upload(round, encodeState(steps[workers.indexOf(other)]!.part))).status).toBe(403);
      for (const uploader of uploaders) expect((await uploader.upload(round, encodeState(steps[workers.indexOf(uploader)]!.part))).status).toBe(204);
      const commits = await Promise.all(workers.map((w) => w.next("commit")));
      const stagesLayers = plan.stages.map((_, stage) => steps[workers.findIndex((w) => pipelinePosition(plan, w.peerId)?.stage === stage)]!.layers);
      const committed = combineLayerHashes(stagesLayers.flat());
      expect(commits.map((c) => c.hash)).toEqual(workers.map(() => committed));
      // The server joins the parts: the state it serves hashes, by layers, to the committed hash.
      await expect.poll(async () => ((await (await fetch(`${host.server.url}/api/status`)).json()) as { stateRound: number }).stateRound, { timeout: WAIT_MS }).toBe(round);
      const stored = decodeState(new Uint8Array(await (await fetch(`${host.server.url}/api/state?round=${round}`)).arrayBuffer()));
      expect(stored.hash).toBe(committed);
      expect(pipelineStateHash(stored.weights, stored.optimizer, params)).toBe(committed);
      expect(stored.weights.length).toBe(initial.weights.length);
      whole = stored;
    }
    for (const w of workers) w.close();
  }, 60_000);
});
