/**
 * Judging a spot check: a member's contribution against the server's recomputation of the same
 * lease from the same weights. The two ran on different backends (WebGPU, WebGL or WASM in the tab,
 * the CPU backend on the server), which sum in different orders, so they agree only to float32
 * rounding: the check is a relative L2 distance under a tolerance, not equality.
 */

/**
 * Largest relative L2 distance an honest contribution may show. Measured (e2e/tests/robust.spec.ts,
 * 50 audits of an MLP [64] on leases of ~50 samples): a SwiftShader WebGPU tab against the server's
 * CPU backend at most 9.2e-7; a CPU-backend tab exactly 0. 1e-3 leaves three orders of margin for
 * real GPUs (fused multiply-add, other reduction trees, larger layers), while every attack we model
 * (sign flip: 2, noise of the gradient's norm: ~1.4, free rider: 1, x1e4: 1e4) lies far above it.
 */
export const AUDIT_TOLERANCE = 1e-3;

/** ||claimed - reference|| / ||reference|| in float64; Infinity for a non-finite or mis-sized claim. */
export function relativeError(claimed: Float32Array, reference: Float32Array): number {
  if (claimed.length !== reference.length) return Number.POSITIVE_INFINITY;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i] as number;
    const d = (claimed[i] as number) - r;
    diff += d * d;
    norm += r * r;
  }
  if (!Number.isFinite(diff)) return Number.POSITIVE_INFINITY;
  // A zero reference (a converged model on an easy lease): any non-zero claim is infinitely off,
  // an exactly zero one is exact.
  if (norm === 0) return diff === 0 ? 0 : Number.POSITIVE_INFINITY;
  return Math.sqrt(diff / norm);
}
