// Which coordinator snapshots the checkpointer keeps: enough to checkpoint every interval and to
// flush the newest state on shutdown, not one per round of the interval.
import type { CoordinatorSnapshot } from "@crowdtrain/coordination";
import { parseJob } from "@crowdtrain/protocol";
import type { ModelState } from "@crowdtrain/training";
import { describe, expect, it } from "vitest";
import type { CheckpointStore } from "../src/training/checkpoint.ts";
import { Checkpointer, type CheckpointWrite } from "../src/training/checkpointer.ts";
import { Metrics } from "../src/training/metrics.ts";

const job = parseJob({ name: "ckpt", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1 }, batchSize: 4, rounds: 1_000 });
const snapshotOf = (round: number): CoordinatorSnapshot => ({ committedRound: round, committedHash: "0".repeat(64), epoch: 0, queue: [], uses: [], nextAttempt: round + 1, finishedEpochs: [], status: "running", maxRounds: null });
const stateOf = (round: number): ModelState => ({ round, hash: "0".repeat(64), weights: new Float32Array(1), optimizer: { kind: "sgd", step: 0, scalars: [], buffers: [] } });

function makeCheckpointer(every: number) {
  const saved: CoordinatorSnapshot[] = [];
  const writes: CheckpointWrite[] = [];
  const store = { save: async (data: { snapshot: CoordinatorSnapshot }) => (saved.push(data.snapshot), "dir") } as unknown as CheckpointStore;
  return { saved, writes, checkpointer: new Checkpointer(store, job, every, () => undefined, 0, (write) => writes.push(write)) };
}

describe("Checkpointer", () => {
  it("checkpoints a due round whose state comes late, flushes a recent one, and has forgotten the rest", async () => {
    const { saved, writes, checkpointer } = makeCheckpointer(10);
    for (let round = 1; round <= 100; round++) checkpointer.remember(round, snapshotOf(round), round * 4);
    const metrics = new Metrics();
    // Round 85 is neither due nor recent: its snapshot is gone, so nothing is written for it.
    await checkpointer.flush(stateOf(85), new Uint8Array(1), metrics);
    expect(saved).toEqual([]);
    // Round 90's state, ten rounds late: still checkpointed, with round 90's snapshot.
    checkpointer.onState(stateOf(90), new Uint8Array(1), metrics);
    // Round 95's on shutdown (within the last rounds).
    await checkpointer.flush(stateOf(95), new Uint8Array(1), metrics);
    expect(saved.map((s) => s.committedRound)).toEqual([90, 95]);
    expect(writes.map((w) => w.round)).toEqual([90, 95]);
  });

  it("with a long interval keeps only the last rounds' snapshots (not one per round since the last checkpoint)", async () => {
    const { saved, checkpointer } = makeCheckpointer(100_000);
    for (let round = 1; round <= 500; round++) checkpointer.remember(round, snapshotOf(round), round);
    const metrics = new Metrics();
    for (const round of [480, 491, 492, 500]) await checkpointer.flush(stateOf(round), new Uint8Array(1), metrics);
    // 480 and 491 were dropped; 492 on are the last rounds.
    expect(saved.map((s) => s.committedRound)).toEqual([492, 500]);
  });
});
