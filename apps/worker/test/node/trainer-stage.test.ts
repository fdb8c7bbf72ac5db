// In test/node (tsconfig.node-test.json): it builds a dataset on disk and serves it over node:http,
// which the browser-only tsconfig of the rest of apps/worker cannot type.
// The trainer's pipeline path in Node (cpu backend): two TrainerCores, each one stage of a replica,
// their activations through real ActivationBridges over an in-memory channel pair, against the
// whole model's gradient and Adam step computed directly.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { Transport } from "@crowdtrain/allreduce";
import { committedOptimizer, parseJob, type PipelinePlan } from "@crowdtrain/protocol";
import { batchTensors, buildModel, combineLayerHashes, computeGradient, createOptimizer, encodeState, loadSplit, modelLayers, parseManifest, pipelineStateHash, readWeights } from "@crowdtrain/training";
import { buildMnistDataset } from "@crowdtrain/training/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ActivationBridge } from "../../src/session/activation-bridge.ts";
import type { GradientReport, StageTask } from "../../src/trainer/api.ts";
import { TrainerCore } from "../../src/trainer/core.ts";

const job = parseJob({ name: "stage-test", dataset: "mnist", model: { kind: "mlp", hidden: [8, 6] }, optimizer: { kind: "adam", learningRate: 0.01 }, batchSize: 12, rounds: 3, parallelism: { stages: 2, microBatches: 3 } });
const LEASE = [3, 1, 4, 15, 9, 2, 6, 5, 35, 8, 97, 93];
let dir: string;
let http: Server;
let origin: string;

beforeAll(async () => {
  await tf.setBackend("cpu");
  dir = mkdtempSync(join(tmpdir(), "crowdtrain-stage-"));
  await buildMnistDataset(join(dir, "mnist"));
  http = createServer((req, res) => {
    try {
      res.end(readFileSync(join(dir, decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname))));
    } catch {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
}, 60_000);

afterAll(async () => {
  await new Promise((resolve) => http.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

/** Two in-memory channel ends: what one sends, the other's handler receives. */
function channelPair(a: string, b: string): [Transport, Transport] {
  const handlers = new Map<string, (from: string, frame: Uint8Array) => void>();
  const end = (self: string, other: string): Transport => ({
    self,
    send: async (to, frame) => {
      if (to !== other) throw new Error(`no link to ${to}`);
      handlers.get(other)?.(self, frame);
    },
    onFrame: (handler) => {
      handlers.set(self, handler);
      return () => handlers.delete(self);
    },
    onPeerGone: () => () => undefined,
  });
  return [end(a, b), end(b, a)];
}

describe("a pipeline tab's trainer", () => {
  it("computes its stage's gradient and steps only its layers: the stages' hashes combine to the whole model's, then it holds its stage alone", async () => {
    const manifest = parseManifest(JSON.parse(readFileSync(join(dir, "mnist", "manifest.json"), "utf8")));
    const layers = modelLayers(job.model, manifest.inputShape, manifest.classes);
    const whole = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
    const weights = readWeights(whole);
    const optimizer = createOptimizer(committedOptimizer(job), weights.length).state();
    const params = layers.map((layer) => layer.params);
    const initial = encodeState({ round: 0, hash: pipelineStateHash(weights, optimizer, params), weights, optimizer });
    const plan: PipelinePlan = { kind: "pipeline", stages: [{ from: 0, to: 2 }, { from: 2, to: layers.length }], replicas: [["a", "b"]], microBatches: 3, schedule: "gpipe" };
    const trainers = [new TrainerCore(), new TrainerCore()];
    const [toB, toA] = channelPair("a", "b");
    const bridges = [new ActivationBridge(toB), new ActivationBridge(toA)];
    try {
      for (const trainer of trainers) {
        await trainer.init({ job, datasetUrl: `${origin}/mnist` });
        expect((await trainer.loadState(initial.slice().buffer)).hash).toBe(pipelineStateHash(weights, optimizer, params));
      }
      const task = (stage: number): StageTask => ({ attempt: 1, lease: LEASE, plan, stage, replica: 0 });
      const outcomes = await Promise.all(trainers.map((trainer, stage) => trainer.computeStage(task(stage), bridges[stage]!.open(1))));
      const reports = outcomes.map((outcome) => {
        if (!outcome.ok) throw new Error(outcome.message);
        return outcome.report as GradientReport;
      });
      // The stages' gradients, end to end, are the whole model's on the same lease.
      const train = await loadSplit(manifest, "train", async (file) => new Uint8Array(readFileSync(join(dir, "mnist", file))));
      const { xs, ys } = batchTensors(train, LEASE, manifest.inputShape, manifest.classes);
      const reference = computeGradient(whole, xs, ys);
      tf.dispose([xs, ys]);
      const joined = new Float32Array([...reports[0]!.gradient, ...reports[1]!.gradient]);
      expect(joined.length).toBe(weights.length);
      joined.forEach((g, i) => expect(g).toBeCloseTo(reference.gradient[i]!, 5));
      expect(reports[1]!.loss).toBeCloseTo(reference.loss, 5);
      expect(reports[0]!.busyMs).toBeLessThanOrEqual(reports[0]!.computeMs);
      // Each steps its own slice; with this very gradient the whole model's Adam step hashes the same.
      const updates = await Promise.all(trainers.map((trainer, stage) => trainer.applyUpdate(1, reports[stage]!.gradient)));
      const step = createOptimizer(committedOptimizer(job), weights.length);
      step.restore(optimizer);
      const stepped = weights.slice();
      step.step(stepped, joined);
      const roundHash = pipelineStateHash(stepped, step.state(), params);
      expect(combineLayerHashes(updates.flatMap((u) => u.layerHashes ?? []))).toBe(roundHash);
      updates.forEach((u) => expect(u.hash).toBe(combineLayerHashes(u.layerHashes ?? [])));
      for (const trainer of trainers) expect((await trainer.commit(1, 1, roundHash)).hash).toBe(roundHash);
      // Committed, a tab holds its stage only: the other stage's layers need the whole state first.
      await expect(trainers[0]!.computeStage({ ...task(1), attempt: 2 }, new MessageChannel().port2)).rejects.toThrow(/must sync first/);
      await expect(trainers[0]!.exportState()).rejects.toThrow(/holds only its layers/);
      // Synced again (the whole state), either may take either stage.
      for (const trainer of trainers) await trainer.loadState(initial.slice().buffer);
      bridges.forEach((bridge) => bridge.close());
      const again = await Promise.all(trainers.map((trainer, stage) => trainer.computeStage({ ...task(1 - stage), attempt: 2, plan: { ...plan, replicas: [["b", "a"]] } }, bridges[stage]!.open(2))));
      expect(again.map((o) => o.ok)).toEqual([true, true]);
    } finally {
      bridges.forEach((bridge) => bridge.dispose());
      await Promise.all(trainers.map((trainer) => trainer.dispose()));
      whole.dispose();
    }
  }, 60_000);
});
