import type { LayerInfo, OptimizerState } from "@crowdtrain/training";

/**
 * A stage's share of the model's state, and the whole state from the stages' shares. Pure.
 *
 * The whole model's flat weights are its layers' weights in order (training weights.ts), so stage k's
 * weights are one contiguous slice; the optimizers' per-weight buffers (sgd's velocity, adam's m and
 * v) are elementwise, so their slices are the stage's buffers, and the step and scalars (adam's
 * beta^t) are the same for every stage. A stage updating its slice with its optimizer therefore
 * computes exactly the bits the whole optimizer would for those weights, and joining the stages'
 * states gives the state a single model would commit: the same TF.js export, checkpoint and hash.
 * A tab that takes over stage k loads `stageState(committed, slice k)`.
 */
export interface StageSlice {
  readonly offset: number;
  readonly length: number;
}

export interface StageState {
  readonly weights: Float32Array;
  readonly optimizer: OptimizerState;
}

export class StageStateError extends Error {
  override name = "StageStateError";
}

/** Where each stage's weights lie in the whole model's flat weights. */
export function stageSlices(layers: readonly LayerInfo[], cuts: readonly { from: number; to: number }[]): StageSlice[] {
  let offset = 0;
  return cuts.map(({ from, to }) => {
    const length = layers.slice(from, to).reduce((sum, layer) => sum + layer.params, 0);
    const slice = { offset, length };
    offset += length;
    return slice;
  });
}

/** Stage `slice`'s weights and optimizer state, copied out of the whole state. */
export function stageState(whole: StageState, slice: StageSlice): StageState {
  const end = slice.offset + slice.length;
  if (end > whole.weights.length) throw new StageStateError(`stage weights [${slice.offset}, ${end}) lie outside a state of ${whole.weights.length}`);
  return {
    weights: whole.weights.slice(slice.offset, end),
    optimizer: { ...whole.optimizer, scalars: [...whole.optimizer.scalars], buffers: whole.optimizer.buffers.map((buffer) => buffer.slice(slice.offset, end)) },
  };
}

/** The whole state from every stage's, in stage order; the stages must agree on the optimizer's kind, step and scalars. */
export function joinStageStates(parts: readonly StageState[]): StageState {
  const [first] = parts;
  if (first === undefined) throw new StageStateError("no stage states to join");
  const { kind, step, scalars, buffers } = first.optimizer;
  for (const [k, part] of parts.entries()) {
    const o = part.optimizer;
    if (o.kind !== kind || o.step !== step || o.scalars.length !== scalars.length || o.scalars.some((s, i) => s !== scalars[i])) {
      throw new StageStateError(`stage ${k}'s optimizer (${o.kind}, step ${o.step}) disagrees with stage 0's (${kind}, step ${step})`);
    }
    if (o.buffers.length !== buffers.length || o.buffers.some((buffer) => buffer.length !== part.weights.length)) {
      throw new StageStateError(`stage ${k}'s optimizer buffers do not match its ${part.weights.length} weights`);
    }
  }
  const join = (pick: (part: StageState) => Float32Array): Float32Array => {
    const out = new Float32Array(parts.reduce((sum, part) => sum + pick(part).length, 0));
    let at = 0;
    for (const part of parts) {
      out.set(pick(part), at);
      at += pick(part).length;
    }
    return out;
  };
  return {
    weights: join((part) => part.weights),
    optimizer: { kind, step, scalars: [...scalars], buffers: buffers.map((_, b) => join((part) => part.optimizer.buffers[b] as Float32Array)) },
  };
}
