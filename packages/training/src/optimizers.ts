import type { OptimizerSpec } from "@crowdtrain/protocol";

/**
 * Optimizers in plain JS on Float32Array, applied after the all-reduce. Every peer holds the same
 * gradient bits, and JS arithmetic (+, *, /, Math.sqrt) is exact IEEE double math on every engine,
 * so every peer computes the same new weights whatever its TF.js backend. Math.pow is not used:
 * the spec lets engines approximate it, so beta^t is kept as a running product instead.
 *
 * The update formulas are those of tf.train.momentum and tf.train.adam; the results differ from
 * TF.js only by rounding (TF rounds to float32 after every op, we round once when storing).
 */
export interface OptimizerState {
  kind: OptimizerSpec["kind"];
  /** Steps applied so far. */
  step: number;
  /** Scalar state: [] for sgd, [beta1^step, beta2^step] for adam. */
  scalars: number[];
  /** Per-weight state, each of the optimizer's size: [velocity] for sgd, [m, v] for adam. */
  buffers: Float32Array[];
}

export interface Optimizer {
  readonly kind: OptimizerSpec["kind"];
  readonly size: number;
  /** Updates `weights` in place from the (already averaged) `gradient`. */
  step(weights: Float32Array, gradient: Float32Array): void;
  /** A copy of the state, safe to keep or send (structured-cloneable). */
  state(): OptimizerState;
  /** Replaces the state with a copy of `snapshot` (e.g. from a checkpoint). */
  restore(snapshot: OptimizerState): void;
}

export function createOptimizer(spec: OptimizerSpec, size: number): Optimizer {
  if (!Number.isInteger(size) || size < 0) throw new RangeError(`optimizer size must be a non-negative integer, got ${size}`);
  return spec.kind === "sgd" ? momentum(spec.learningRate, spec.momentum, spec.nesterov, size) : adam(spec, size);
}

/**
 * tf.train.momentum: accum = m*accum + g; w = w - lr*accum, or with Nesterov w = w - lr*(g + m*accum).
 * With m = 0 this is plain SGD.
 */
function momentum(learningRate: number, m: number, nesterov: boolean, size: number): Optimizer {
  let steps = 0;
  let accum = new Float32Array(size);
  return {
    kind: "sgd",
    size,
    step(weights, gradient) {
      checkLengths(size, weights, gradient);
      for (let i = 0; i < size; i++) {
        const g = gradient[i] as number;
        accum[i] = m * (accum[i] as number) + g;
        const direction = nesterov ? g + m * (accum[i] as number) : (accum[i] as number);
        weights[i] = (weights[i] as number) - learningRate * direction;
      }
      steps++;
    },
    state: () => ({ kind: "sgd", step: steps, scalars: [], buffers: [accum.slice()] }),
    restore(snapshot) {
      const [buffer] = checkSnapshot(snapshot, "sgd", size, 0, 1);
      steps = snapshot.step;
      accum = buffer.slice();
    },
  };
}

/**
 * tf.train.adam: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
 * w = w - lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps).
 */
function adam(spec: Extract<OptimizerSpec, { kind: "adam" }>, size: number): Optimizer {
  const { learningRate, beta1, beta2, epsilon } = spec;
  let steps = 0;
  let beta1Power = 1;
  let beta2Power = 1;
  let m = new Float32Array(size);
  let v = new Float32Array(size);
  return {
    kind: "adam",
    size,
    step(weights, gradient) {
      checkLengths(size, weights, gradient);
      beta1Power *= beta1;
      beta2Power *= beta2;
      const correction1 = 1 - beta1Power;
      const correction2 = 1 - beta2Power;
      const oneMinusBeta1 = 1 - beta1;
      const oneMinusBeta2 = 1 - beta2;
      for (let i = 0; i < size; i++) {
        const g = gradient[i] as number;
        // Read back after storing: the update uses the float32 moments, as TF.js does.
        m[i] = beta1 * (m[i] as number) + oneMinusBeta1 * g;
        v[i] = beta2 * (v[i] as number) + oneMinusBeta2 * (g * g);
        const mHat = (m[i] as number) / correction1;
        const vHat = (v[i] as number) / correction2;
        weights[i] = (weights[i] as number) - (mHat / (Math.sqrt(vHat) + epsilon)) * learningRate;
      }
      steps++;
    },
    state: () => ({ kind: "adam", step: steps, scalars: [beta1Power, beta2Power], buffers: [m.slice(), v.slice()] }),
    restore(snapshot) {
      const [first, second] = checkSnapshot(snapshot, "adam", size, 2, 2);
      steps = snapshot.step;
      [beta1Power, beta2Power] = snapshot.scalars as [number, number];
      m = first.slice();
      v = (second as Float32Array).slice();
    },
  };
}

function checkLengths(size: number, weights: Float32Array, gradient: Float32Array): void {
  if (weights.length !== size || gradient.length !== size) {
    throw new RangeError(`optimizer of size ${size} got ${weights.length} weights and ${gradient.length} gradient values`);
  }
}

function checkSnapshot(
  snapshot: OptimizerState,
  kind: OptimizerState["kind"],
  size: number,
  scalars: number,
  buffers: number,
): [Float32Array, ...Float32Array[]] {
  const problem =
    snapshot.kind !== kind ? `kind ${snapshot.kind}, expected ${kind}`
    : !Number.isInteger(snapshot.step) || snapshot.step < 0 ? `step ${snapshot.step} is not a non-negative integer`
    : snapshot.scalars.length !== scalars || !snapshot.scalars.every(Number.isFinite) ? `expected ${scalars} finite scalars`
    : snapshot.buffers.length !== buffers ? `expected ${buffers} buffers, got ${snapshot.buffers.length}`
    : snapshot.buffers.some((b) => !(b instanceof Float32Array) || b.length !== size) ? `every buffer must be a Float32Array of ${size}`
    : null;
  if (problem !== null) throw new Error(`cannot restore optimizer state: ${problem}`);
  return snapshot.buffers as [Float32Array, ...Float32Array[]];
}
