import { shapeElements, type LayerInfo } from "@crowdtrain/training";
import type { ScheduleKind } from "./schedule.ts";

/**
 * Where to cut a model into K pipeline stages: consecutive layer ranges whose slowest stage is as
 * fast as possible (a pipeline runs at the pace of its slowest stage), each within a tab's memory.
 *
 * Cuts fall only before a layer with weights, so every stage holds weights to train and weightless
 * layers (flatten, pooling) stay with the layer before them. The best cut is found exactly by
 * dynamic programming over the layers (K ≤ 16 and a few dozen layers: microseconds).
 *
 * Costs are per-sample forward FLOPs unless measured ones are given (milliseconds, say): only their
 * ratios matter. A stage's round costs forward + backward (about twice the forward) + the
 * recomputed forward of GPipe's re-materialisation, 4× the forward, the same factor for every stage.
 */
export interface StageMemoryModel {
  /** Float32 buffers per weight besides the weight itself: the gradient, the optimizer's (sgd 1, adam 2). */
  readonly optimizerBuffers: number;
  /** Rows of one micro-batch (the largest). */
  readonly microRows: number;
  readonly micros: number;
  readonly schedule: ScheduleKind;
}

export interface StageCut {
  /** Layers [from, to) of the model. */
  readonly from: number;
  readonly to: number;
  readonly params: number;
  /** Sum of the layers' costs. */
  readonly cost: number;
  /** Estimated bytes the stage needs in a tab (stageMemoryBytes). */
  readonly memoryBytes: number;
}

export class PartitionError extends Error {
  override name = "PartitionError";
}

/**
 * Bytes a stage holding layers [from, to) needs: its weights, the copies of their gradient alive at
 * once (three while micro-batches accumulate, two at the read-back) and optimizer buffers (float32),
 * the inputs it stashes between forward and backward (all M micro-batches under GPipe; at most K − k
 * under 1F1B, bounded here by M too; one on the last stage), and one micro-batch's layer outputs
 * twice over (the forward's activations and their gradients while it runs a backward). An estimate:
 * backends add their own workspace.
 */
export function stageMemoryBytes(layers: readonly LayerInfo[], from: number, to: number, memory: StageMemoryModel, stages = 1, stage = 0): number {
  const slice = layers.slice(from, to);
  const params = slice.reduce((sum, layer) => sum + layer.params, 0);
  const inputElements = shapeElements(slice[0]?.inputShape ?? []);
  // The last stage turns each micro-batch around as it arrives (schedule.ts): one at a time.
  const stashed = stage === stages - 1 ? 1 : memory.schedule === "gpipe" ? memory.micros : Math.min(memory.micros, stages - stage);
  const working = 2 * slice.reduce((sum, layer) => sum + shapeElements(layer.outputShape), 0);
  // Gradient copies alive at once: accumulating a micro-batch's gradients holds the running sum,
  // the new ones and their sum (StageCompute.keep); reading back holds the parts and their concat.
  const gradientCopies = memory.micros > 1 ? 3 : 2;
  return 4 * (params * (1 + gradientCopies + memory.optimizerBuffers) + memory.microRows * (stashed * inputElements + working));
}

export interface PartitionOptions {
  readonly layers: readonly LayerInfo[];
  readonly stages: number;
  readonly memory: StageMemoryModel;
  /** Each layer's cost (default: its forward FLOPs per sample). */
  readonly costs?: readonly number[];
  /** Bytes any one stage may use (the smallest budget of the tabs that will hold stages); none = unbounded. */
  readonly budgetBytes?: number;
}

/** The best cut into `stages` stages; throws PartitionError when none fits (the message says why). */
export function partitionLayers(o: PartitionOptions): StageCut[] {
  const result = tryPartition(o);
  if (result instanceof PartitionError) throw result;
  return result;
}

/** The fewest stages (up to `maxStages`) whose cut fits the budget, or undefined. */
export function fewestStages(o: Omit<PartitionOptions, "stages">, maxStages: number): StageCut[] | undefined {
  for (let stages = 1; stages <= maxStages; stages++) {
    const result = tryPartition({ ...o, stages });
    if (!(result instanceof PartitionError)) return result;
  }
  return undefined;
}

/** partitionLayers, with "no cut fits" as a value: callers that try several stage counts expect it. */
export function tryPartition(o: PartitionOptions): StageCut[] | PartitionError {
  const { layers, stages } = o;
  const costs = o.costs ?? layers.map((layer) => layer.flops);
  if (costs.length !== layers.length || costs.some((c) => !Number.isFinite(c) || c < 0)) throw new RangeError(`need one finite, non-negative cost per layer (${layers.length})`);
  // Cut points: 0 and the start of every weighted layer but the first; the model's end closes the last stage.
  const weighted = layers.flatMap((layer, i) => (layer.params > 0 ? [i] : []));
  const cuts = [0, ...weighted.slice(1)];
  if (!Number.isInteger(stages) || stages < 1) throw new RangeError(`stages must be a positive integer, got ${stages}`);
  if (stages > cuts.length) return new PartitionError(`the model has ${weighted.length} layers with weights: it can be cut into at most ${weighted.length} stages, not ${stages}`);
  const ends = [...cuts.slice(1), layers.length];
  const budget = o.budgetBytes ?? Infinity;
  const prefix = [0];
  for (const cost of costs) prefix.push((prefix[prefix.length - 1] as number) + cost);
  const cut = (a: number, b: number, k: number): StageCut => {
    const from = cuts[a] as number;
    const to = ends[b - 1] as number;
    return {
      from, to,
      params: layers.slice(from, to).reduce((sum, layer) => sum + layer.params, 0),
      cost: (prefix[to] as number) - (prefix[from] as number),
      memoryBytes: stageMemoryBytes(layers, from, to, o.memory, stages, k),
    };
  };
  // best[k][j]: the smallest possible slowest-stage cost of the first j units in k stages (units
  // are the spans between cut points), and the unit where the last of those k stages starts.
  const units = cuts.length;
  const best: { cost: number; start: number }[][] = Array.from({ length: stages + 1 }, () => Array.from({ length: units + 1 }, () => ({ cost: Infinity, start: -1 })));
  (best[0] as { cost: number; start: number }[])[0] = { cost: 0, start: 0 };
  for (let k = 1; k <= stages; k++) {
    for (let j = k; j <= units; j++) {
      for (let i = k - 1; i < j; i++) {
        const before = best[k - 1]?.[i]?.cost ?? Infinity;
        if (before === Infinity) continue;
        const stage = cut(i, j, k - 1);
        if (stage.memoryBytes > budget) continue;
        const worst = Math.max(before, stage.cost);
        const row = best[k] as { cost: number; start: number }[];
        if (worst < (row[j] as { cost: number }).cost) row[j] = { cost: worst, start: i };
      }
    }
  }
  if ((best[stages]?.[units]?.cost ?? Infinity) === Infinity) {
    const whole = stageMemoryBytes(layers, 0, layers.length, o.memory);
    return new PartitionError(
      `no cut of the model into ${stages} stage${stages === 1 ? "" : "s"} fits a tab's ${mib(budget)} MiB (the whole model needs ${mib(whole)} MiB; its largest layer alone ${mib(largestLayerBytes(layers, o.memory))} MiB)`,
    );
  }
  const result: StageCut[] = [];
  for (let k = stages, j = units; k > 0; k--) {
    const start = (best[k]?.[j] as { start: number }).start;
    result.unshift(cut(start, j, k - 1));
    j = start;
  }
  return result;
}

function largestLayerBytes(layers: readonly LayerInfo[], memory: StageMemoryModel): number {
  return Math.max(...layers.map((_, i) => stageMemoryBytes(layers, i, i + 1, memory)));
}

const mib = (bytes: number): string => (bytes === Infinity ? "unbounded" : (bytes / 2 ** 20).toFixed(1));
