// npm run bench:pipeline — pipeline (and hybrid) parallelism in real tabs: each tab is one stage of
// one replica; activations forward and their gradients backward travel as binary frames on the p2p
// "activations" channel over WebRTC, through the real codec, inbox checks and round runner
// (packages/pipeline); each stage then all-reduces its gradient with the same stage of the other
// replicas. Rows for K ∈ {1, 2, 4} stages, M ∈ {1, 4, 8} micro-batches, R ∈ {1, 2} replicas, GPipe and
// 1F1B, with the measured bubble beside (K−1)/(M+K−1). Writes e2e/results/pipeline.json.
import { availableParallelism } from "node:os";
import type { Page } from "@playwright/test";
import { expect, test } from "../fixtures.ts";
import type { ModelSpec } from "@crowdtrain/protocol";
import type { PipeRound, PipeRunArgs } from "../../apps/worker/src/lab-api.ts";
import { bubbleTheory, measuredBubble, partitionLayers, simulateRound, type Interval, type ScheduleKind } from "../../packages/pipeline/src/index.ts";
import { modelLayers } from "../../packages/training/src/layers.ts";
import { median, table, writeResults } from "./report.ts";

const listFromEnv = (name: string, fallback: number[]): number[] => (process.env[name] ? process.env[name].split(",").map(Number) : fallback);
const STAGES = listFromEnv("BENCH_STAGES", [1, 2, 4]);
const MICRO_BATCHES = listFromEnv("BENCH_MICRO_BATCHES", [1, 4, 8]);
const REPLICAS = listFromEnv("BENCH_REPLICAS", [1, 2]);
const SCHEDULES = (process.env.BENCH_SCHEDULES ?? "gpipe,1f1b").split(",") as ("gpipe" | "1f1b")[];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BACKEND = process.env.BENCH_BACKEND ?? "cpu";
/** Rows of each replica's batch. */
const ROWS = Number(process.env.BENCH_ROWS ?? 256);
/** Four dense layers of equal cost (256 → 256 by default, three relu and the softmax), so 1, 2 or 4 stages balance exactly. */
const WIDTH = Number(process.env.BENCH_WIDTH ?? 256);
const MODEL: ModelSpec = { kind: "mlp", hidden: [WIDTH, WIDTH, WIDTH], activation: "relu" };
const INPUT_SHAPE = [WIDTH];
const CLASSES = WIDTH;
/** Every tab starts a round at the same wall-clock instant, this far after the test asks. */
const START_DELAY_MS = 1_000;
const BENCH_TIMEOUT_MS = 40 * 60_000;
/** The fault row closes a stage's tab this long into its rounds. */
const FAULT_AFTER_MS = 1_500;

type Row = {
  stages: number;
  microBatches: number;
  replicas: number;
  schedule: string;
  tabs: number;
  backend: string;
  rounds: number;
  /** From the common start to the last stage's gradient averaged (all-reduce included), median over rounds. */
  roundMs: number;
  /** The pipeline alone: start to the last backward, median. */
  pipelineMs: number;
  samplesPerSecond: number;
  /** Mean idle share of a stage during the pipeline part of a round (measuredBubble), median over rounds. */
  bubbleMeasured: number;
  bubbleTheory: number;
  bubbleRatio: number;
  /**
   * The bubble simulateRound gives this schedule with each stage's measured forward and backward
   * times (medians) and free links: what the stages' imbalance alone leaves idle. bubbleMeasured
   * above it is the links' and the tabs' scheduling overhead.
   */
  bubbleSimulated: number;
  /** Per stage, the median forward and backward of one micro-batch (ms; the last stage's forward runs inside its backward). */
  stageForwardMs: number[];
  stageBackwardMs: number[];
  activationBytesPerRound: number;
  gradientBytesPerRound: number;
  /** Latest a tab began after the common start: a late tab shows as bubble in the others. */
  lateStartMs: number;
};

/**
 * Stage 1 of a 2-stage pipeline closes its tab mid-round: stage 0's round must fail with NeighbourGone
 * as soon as the link closes, not at ACTIVATION_WAIT_MS (30 s). Returns how long that took.
 */
async function closeStageMidRound(layers: ReturnType<typeof modelLayers>, pages: Page[], attempt: number): Promise<{ detectMs: number; outcome: string }> {
  const ids = await openStages(pages);
  const cuts = partitionLayers({ layers, stages: 2, memory: { optimizerBuffers: 1, microRows: ROWS / 8, micros: 8, schedule: "gpipe" } }).map(({ from, to }) => ({ from, to }));
  const startAt = Date.now() + START_DELAY_MS;
  const args = (stage: number): PipeRunArgs => ({
    model: MODEL, inputShape: INPUT_SHAPE, classes: CLASSES, backend: BACKEND, cuts, stage, chain: ids, replicaPeers: [ids[stage] as string],
    // Rounds back to back (every start is already past after the first), so the close lands mid-round.
    rows: ROWS, microBatches: 8, schedule: "gpipe", attempt, startAts: new Array<number>(50).fill(startAt),
  });
  const survivor = pages[0]!.evaluate((a) => window.crowdtrainLab.pipeRun(a), args(0)).then(() => "finished every round", (error: unknown) => String(error));
  // The closed tab's own call dies with its page.
  void pages[1]!.evaluate((a) => window.crowdtrainLab.pipeRun(a), args(1)).catch(() => undefined);
  await new Promise((resolve) => setTimeout(resolve, startAt - Date.now() + FAULT_AFTER_MS));
  const closedAt = Date.now();
  await pages[1]!.close();
  const outcome = await survivor;
  const detectMs = Date.now() - closedAt;
  expect(outcome).toMatch(/NeighbourGone|is gone/);
  return { detectMs, outcome: outcome.split("\n")[0] ?? outcome };
}

/** Per stage, the median duration of its `kind` intervals over every measured round and replica (0 when it has none). */
function stageCosts(rounds: PipeRound[][], stages: number, kind: "forward" | "backward"): number[] {
  return Array.from({ length: stages }, (_, k) => {
    const durations = rounds.flatMap((results) => results.filter((_, tab) => tab % stages === k).flatMap((r) => r.busy.filter(([, , kindOf]) => kindOf === kind).map(([start, end]) => end - start)));
    return durations.length === 0 ? 0 : median(durations);
  });
}

async function openStages(pages: Page[]): Promise<string[]> {
  const ids = await Promise.all(pages.map((page) => page.evaluate(() => window.crowdtrainLab.pipeOpen())));
  await Promise.all(pages.map((page) => page.evaluate((peers) => window.crowdtrainLab.pipeConnect(peers), ids)));
  return ids;
}

test("pipeline parallelism over WebRTC: round time, throughput and the measured bubble against (K−1)/(M+K−1)", async ({ openWorkers }) => {
  test.setTimeout(BENCH_TIMEOUT_MS);
  const layers = modelLayers(MODEL, INPUT_SHAPE, CLASSES);
  const rows: Row[] = [];
  let attempt = 1;
  for (const stages of STAGES) {
    for (const replicas of REPLICAS) {
      const pages = await openWorkers(stages * replicas, "/lab.html");
      const ids = await openStages(pages);
      // ids[r * stages + k] holds stage k of replica r.
      for (const microBatches of MICRO_BATCHES) {
        const cuts = partitionLayers({ layers, stages, memory: { optimizerBuffers: 1, microRows: Math.ceil(ROWS / microBatches), micros: microBatches, schedule: "gpipe" } }).map(({ from, to }) => ({ from, to }));
        for (const schedule of stages === 1 ? SCHEDULES.slice(0, 1) : SCHEDULES) {
          const perRound: PipeRound[][] = [];
          const measured: { roundMs: number; pipelineMs: number; bubble: number; activationBytes: number; gradientBytes: number; late: number; backend: string }[] = [];
          // Round 0 warms up (kernels, buffers, links); it is not counted.
          for (let round = 0; round <= ROUNDS; round++) {
            const startAt = Date.now() + START_DELAY_MS;
            const results = await Promise.all(
              pages.map((page, tab) => {
                const replica = Math.floor(tab / stages);
                const stage = tab % stages;
                const args: PipeRunArgs = {
                  model: MODEL, inputShape: INPUT_SHAPE, classes: CLASSES, backend: BACKEND, cuts, stage,
                  chain: ids.slice(replica * stages, (replica + 1) * stages),
                  replicaPeers: Array.from({ length: replicas }, (_, r) => ids[r * stages + stage] as string),
                  rows: ROWS, microBatches, schedule, attempt, startAts: [startAt],
                };
                return page.evaluate((a) => window.crowdtrainLab.pipeRun(a), args).then((r) => r[0] as PipeRound);
              }),
            );
            attempt++;
            for (const result of results) expect(result.busy.length).toBeGreaterThan(0);
            const lasts = results.filter((_, tab) => tab % stages === stages - 1);
            for (const last of lasts) expect(Number.isFinite(last.loss)).toBe(true);
            if (round === 0) continue;
            perRound.push(results);
            const bubbles = Array.from({ length: replicas }, (_, r) => {
              const replica = results.slice(r * stages, (r + 1) * stages);
              const span: Interval = { start: startAt, end: Math.max(...replica.map((s) => s.end)) };
              return measuredBubble(replica.map((s) => s.busy.map(([start, end]) => ({ start, end }))), span);
            });
            measured.push({
              roundMs: Math.max(...results.map((r) => r.reducedAt)) - startAt,
              pipelineMs: Math.max(...results.map((r) => r.end)) - startAt,
              bubble: bubbles.reduce((a, b) => a + b, 0) / bubbles.length,
              activationBytes: results.reduce((sum, r) => sum + r.activationBytes, 0),
              gradientBytes: results.reduce((sum, r) => sum + r.gradientBytes, 0),
              late: Math.max(...results.map((r) => r.start - startAt)),
              backend: results[0]!.backend,
            });
          }
          const roundMs = median(measured.map((m) => m.roundMs));
          const theory = bubbleTheory(stages, microBatches);
          const bubble = median(measured.map((m) => m.bubble));
          const stageForwardMs = stageCosts(perRound, stages, "forward");
          const stageBackwardMs = stageCosts(perRound, stages, "backward");
          const simulated = simulateRound(schedule as ScheduleKind, microBatches, { forward: stageForwardMs, backward: stageBackwardMs, transfer: 0 });
          rows.push({
            stages, microBatches, replicas, schedule, tabs: stages * replicas, backend: measured[0]!.backend, rounds: measured.length,
            roundMs, pipelineMs: median(measured.map((m) => m.pipelineMs)), samplesPerSecond: (replicas * ROWS) / (roundMs / 1000),
            bubbleMeasured: bubble, bubbleTheory: theory, bubbleRatio: theory === 0 ? Number.NaN : bubble / theory,
            bubbleSimulated: simulated.bubble, stageForwardMs, stageBackwardMs,
            activationBytesPerRound: median(measured.map((m) => m.activationBytes)), gradientBytesPerRound: median(measured.map((m) => m.gradientBytes)),
            lateStartMs: Math.max(...measured.map((m) => m.late)),
          });
          writeResults(process.env.BENCH_OUT ?? "pipeline", { model: MODEL, rowsPerReplica: ROWS, cores: availableParallelism(), rows });
          const last = rows.at(-1)!;
          console.log(`pipeline: K=${stages} M=${microBatches} R=${replicas} ${schedule}: round ${last.roundMs.toFixed(0)} ms, ${last.samplesPerSecond.toFixed(0)} samples/s, bubble ${last.bubbleMeasured.toFixed(3)} (theory ${theory.toFixed(3)}, simulated from the stages' times ${last.bubbleSimulated.toFixed(3)})`);
        }
      }
      await Promise.all(pages.map((page) => page.evaluate(() => window.crowdtrainLab.pipeClose())));
      await Promise.all(pages.map((page) => page.close()));
    }
  }
  const fault = await closeStageMidRound(layers, await openWorkers(2, "/lab.html"), attempt);
  writeResults(process.env.BENCH_OUT ?? "pipeline", { model: MODEL, rowsPerReplica: ROWS, cores: availableParallelism(), rows, fault });
  console.log(`pipeline: stage 1's tab closed mid-round; stage 0 failed in ${fault.detectMs} ms: ${fault.outcome}`);
  console.log(
    table(
      ["K", "M", "R", "sched", "tabs", "round ms", "pipe ms", "samples/s", "bubble", "theory", "ratio", "simulated", "act MB", "grad MB", "late ms"],
      rows.map((r) => [r.stages, r.microBatches, r.replicas, r.schedule, r.tabs, r.roundMs.toFixed(0), r.pipelineMs.toFixed(0), r.samplesPerSecond.toFixed(0), r.bubbleMeasured.toFixed(3), r.bubbleTheory.toFixed(3), Number.isNaN(r.bubbleRatio) ? "-" : r.bubbleRatio.toFixed(2), r.bubbleSimulated.toFixed(3), (r.activationBytesPerRound / 1e6).toFixed(2), (r.gradientBytesPerRound / 1e6).toFixed(2), r.lateStartMs.toFixed(0)].map(String)),
    ),
  );
});
