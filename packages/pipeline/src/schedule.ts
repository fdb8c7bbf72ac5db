import type { ScheduleKind } from "@crowdtrain/protocol";

export type { ScheduleKind };

/**
 * The order in which one stage runs its micro-batches' forwards and backwards in a round, and an
 * event simulation of a whole replica under those orders.
 *
 * GPipe: every forward (0..M−1), then every backward (0..M−1). The last stage computes a
 * micro-batch's forward inside its backward (StageCompute.lossBackward: the loss needs both), so it
 * runs each micro-batch's forward and backward as soon as it arrives, and the stages before take the
 * gradients back in that order. (Backwards last-first, the textbook order, left the last stage idle
 * through the whole forward phase: (M−1) forwards' time more per round, 0.37 instead of 0.27 at
 * K = 4, M = 8; schedule.test.ts.) 1F1B (PipeDream-Flush): stage k runs min(K−k−1, M) warm-up
 * forwards, then alternates one forward and one backward, then drains the backwards. Both idle a
 * stage (K−1)/(M+K−1) of a round when stages cost the same; 1F1B's gain is memory: stage k stashes
 * at most K−k micro-batches' inputs instead of all M (see simulateRound's peakStash).
 */
export interface PipelineOp {
  readonly kind: "forward" | "backward";
  readonly micro: number;
}

function checkShape(stages: number, stage: number, micros: number): void {
  if (!Number.isInteger(stages) || stages < 1) throw new RangeError(`stages must be a positive integer, got ${stages}`);
  if (!Number.isInteger(stage) || stage < 0 || stage >= stages) throw new RangeError(`stage ${stage} is not in [0, ${stages})`);
  if (!Number.isInteger(micros) || micros < 1) throw new RangeError(`micro-batches must be a positive integer, got ${micros}`);
}

/** Stage `stage`'s ops of one round, in the order it runs them. */
export function stageOps(kind: ScheduleKind, stages: number, stage: number, micros: number): PipelineOp[] {
  checkShape(stages, stage, micros);
  const forward = (micro: number): PipelineOp => ({ kind: "forward", micro });
  const backward = (micro: number): PipelineOp => ({ kind: "backward", micro });
  if (kind === "gpipe") {
    // The last stage computes a micro-batch's forward inside its backward (the loss needs both), so
    // it has nothing to do in a forward phase: it turns each micro-batch around as it arrives.
    if (stage === stages - 1) return Array.from({ length: micros }, (_, m) => [forward(m), backward(m)]).flat();
    return [...Array.from({ length: micros }, (_, m) => forward(m)), ...Array.from({ length: micros }, (_, m) => backward(m))];
  }
  const warmup = Math.min(stages - stage - 1, micros);
  const ops = Array.from({ length: warmup }, (_, m) => forward(m));
  for (let m = 0; m < micros - warmup; m++) ops.push(forward(warmup + m), backward(m));
  for (let m = micros - warmup; m < micros; m++) ops.push(backward(m));
  return ops;
}

/** The idle share of each stage with equal stage costs and free links: (K−1)/(M+K−1). */
export function bubbleTheory(stages: number, micros: number): number {
  checkShape(stages, 0, micros);
  return (stages - 1) / (micros + stages - 1);
}

export interface Interval {
  readonly start: number;
  readonly end: number;
}

/** Per-micro-batch costs of a simulated round (any unit, milliseconds say). */
export interface OpCosts {
  /** Forward of one micro-batch, per stage. */
  readonly forward: readonly number[];
  /** Backward of one micro-batch (recomputed forward included), per stage. */
  readonly backward: readonly number[];
  /** Time a micro-batch's activations take between neighbouring stages, either way. */
  readonly transfer: number;
}

export interface SimulatedRound {
  /** From the first op's start to the last op's end. */
  readonly makespan: number;
  /** Each stage's busy intervals. */
  readonly busy: readonly (readonly Interval[])[];
  /** Each stage's largest count of micro-batches forwarded and not yet backwarded (inputs it holds). */
  readonly peakStash: readonly number[];
  /** Mean idle share of a stage over the round (measuredBubble of the simulated busy times). */
  readonly bubble: number;
}

/**
 * Runs the schedule on a model of the replica: a stage runs its ops in order, each as soon as the
 * stage is free and its input has arrived (a forward needs the stage before's forward of the same
 * micro-batch, a backward the stage after's backward; sends never block). Throws if the schedule
 * would deadlock (no stage can go on), which a correct schedule never does.
 */
export function simulateRound(kind: ScheduleKind, micros: number, costs: OpCosts): SimulatedRound {
  const stages = costs.forward.length;
  if (costs.backward.length !== stages) throw new RangeError(`${stages} forward costs but ${costs.backward.length} backward costs`);
  const ops = Array.from({ length: stages }, (_, k) => stageOps(kind, stages, k, micros));
  const next = new Array<number>(stages).fill(0);
  const free = new Array<number>(stages).fill(0);
  const forwardDone = Array.from({ length: stages }, () => new Array<number | undefined>(micros));
  const backwardDone = Array.from({ length: stages }, () => new Array<number | undefined>(micros));
  const busy = Array.from({ length: stages }, (): Interval[] => []);
  const stash = new Array<number>(stages).fill(0);
  const peakStash = new Array<number>(stages).fill(0);
  let remaining = ops.reduce((sum, list) => sum + list.length, 0);
  while (remaining > 0) {
    let progressed = false;
    for (let k = 0; k < stages; k++) {
      const op = ops[k]?.[next[k] as number];
      if (op === undefined) continue;
      const ready = op.kind === "forward" ? (k === 0 ? 0 : arrival(forwardDone[k - 1]?.[op.micro], costs.transfer)) : k === stages - 1 ? forwardDone[k]?.[op.micro] : arrival(backwardDone[k + 1]?.[op.micro], costs.transfer);
      if (ready === undefined) continue;
      const start = Math.max(free[k] as number, ready);
      const end = start + ((op.kind === "forward" ? costs.forward[k] : costs.backward[k]) as number);
      (op.kind === "forward" ? forwardDone : backwardDone)[k]![op.micro] = end;
      busy[k]!.push({ start, end });
      free[k] = end;
      stash[k] = (stash[k] as number) + (op.kind === "forward" ? 1 : -1);
      peakStash[k] = Math.max(peakStash[k] as number, stash[k] as number);
      next[k] = (next[k] as number) + 1;
      remaining--;
      progressed = true;
    }
    if (!progressed) throw new Error(`the ${kind} schedule deadlocks with ${stages} stages and ${micros} micro-batches at ops ${next.join(", ")}`);
  }
  const span = { start: 0, end: Math.max(...free) };
  return { makespan: span.end, busy, peakStash, bubble: measuredBubble(busy, span) };
}

const arrival = (done: number | undefined, transfer: number): number | undefined => (done === undefined ? undefined : done + transfer);

/**
 * The mean idle share of a stage during `span`: for each stage, 1 − (its busy time inside the span)
 * / (the span), averaged over stages. Overlapping intervals of one stage count once.
 */
export function measuredBubble(busy: readonly (readonly Interval[])[], span: Interval): number {
  const length = span.end - span.start;
  if (busy.length === 0 || !(length > 0)) throw new RangeError("measuredBubble needs stages and a span of positive length");
  const idle = busy.map((intervals) => 1 - busyTime(intervals, span) / length);
  return idle.reduce((sum, share) => sum + share, 0) / idle.length;
}

function busyTime(intervals: readonly Interval[], span: Interval): number {
  const clipped = intervals
    .map(({ start, end }) => ({ start: Math.max(start, span.start), end: Math.min(end, span.end) }))
    .filter(({ start, end }) => end > start)
    .sort((a, b) => a.start - b.start);
  let total = 0;
  let reach = -Infinity;
  for (const { start, end } of clipped) {
    if (end <= reach) continue;
    total += end - Math.max(start, reach);
    reach = end;
  }
  return total;
}
