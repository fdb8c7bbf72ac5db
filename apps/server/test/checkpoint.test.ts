import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseJob } from "@crowdtrain/protocol";
import { encodeState, hashState, type OptimizerState } from "@crowdtrain/training";
import { afterEach, describe, expect, it } from "vitest";
import { CheckpointError, CheckpointStore, type CheckpointData } from "../src/training/checkpoint.ts";

const job = parseJob({ name: "ckpt", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1 }, batchSize: 8, rounds: 50 });
const dirs: string[] = [];
const tempDir = (): string => {
  const dir = mkdtempSync(join(tmpdir(), "crowdtrain-ckpt-"));
  dirs.push(dir);
  return dir;
};
afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function checkpoint(round: number): { data: CheckpointData; state: Uint8Array } {
  const weights = Float32Array.from([round, 1, 2]);
  const optimizer: OptimizerState = { kind: "sgd", step: round, scalars: [], buffers: [new Float32Array(3)] };
  const hash = hashState(weights, optimizer);
  return {
    data: {
      version: 2,
      job,
      round,
      savedAt: 1,
      snapshot: { committedRound: round, committedHash: hash, epoch: 0, queue: [3, 4], uses: [1, 1, 0, 0, 0], nextAttempt: round + 7, finishedEpochs: [], status: "running" },
      metrics: { rounds: [], evals: [], samplesSeen: round * 8 },
    },
    state: encodeState({ round, hash, weights, optimizer }),
  };
}

describe("checkpoints", () => {
  it("round-trips the latest checkpoint and keeps only the last two", async () => {
    const store = new CheckpointStore(tempDir(), job.name);
    expect(await store.load(job)).toBeUndefined();
    for (const round of [10, 20, 30]) {
      const { data, state } = checkpoint(round);
      await store.save(data, state);
    }
    const loaded = await store.load(job);
    expect(loaded?.data.round).toBe(30);
    expect(loaded?.data.snapshot.nextAttempt).toBe(37);
    expect(Array.from(loaded!.state.weights)).toEqual([30, 1, 2]);
    expect(readdirSync(store.dir).filter((n) => n.startsWith("round-")).sort()).toEqual(["round-20", "round-30"]);
  });

  it("a crash mid-write (a stray temporary directory) leaves the previous checkpoint in force", async () => {
    const store = new CheckpointStore(tempDir(), job.name);
    const { data, state } = checkpoint(10);
    await store.save(data, state);
    mkdirSync(join(store.dir, ".round-20.tmp-1-1"));
    writeFileSync(join(store.dir, ".round-20.tmp-1-1", "state.bin"), "half");
    expect((await store.load(job))?.data.round).toBe(10);
  });

  it("refuses a checkpoint of another job, or a corrupt one, with a clear error", async () => {
    const base = tempDir();
    const store = new CheckpointStore(base, job.name);
    const { data, state } = checkpoint(10);
    await store.save(data, state);
    await expect(store.load({ ...job, batchSize: 16 })).rejects.toThrow(/different job/);
    // A state whose bits were changed after it was written no longer hashes to what was committed.
    const tampered = checkpoint(10);
    const altered = encodeState({ round: 10, hash: tampered.data.snapshot.committedHash, weights: Float32Array.from([10, 1, 3]), optimizer: { kind: "sgd", step: 10, scalars: [], buffers: [new Float32Array(3)] } });
    writeFileSync(join(store.dir, "round-10", "state.bin"), altered);
    await expect(store.load(job)).rejects.toThrow(/contents hash to/);
    writeFileSync(join(store.dir, "round-10", "state.bin"), "garbage");
    await expect(store.load(job)).rejects.toThrow(CheckpointError);
    writeFileSync(join(store.dir, "latest.json"), "{not json");
    await expect(store.load(job)).rejects.toThrow(/latest.json is not JSON/);
  });
});
