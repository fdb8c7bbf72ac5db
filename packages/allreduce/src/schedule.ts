/**
 * The ring schedule (pure). Peer at ring position i of n ends reduce-scatter owning segment i.
 *
 * reduce-scatter, step s in [0, n-2]: send segment (i-1-s), receive segment (i-2-s) from the left
 *   neighbour and add the local values to it. At s = n-2 the received segment is i: fully reduced.
 * all-gather, step s in [0, n-2]: send segment (i-s), receive segment (i-1-s) and keep it as final.
 *
 * So a chunk received at step s is exactly the chunk sent at step s+1, which is what lets every
 * chunk be forwarded as soon as it arrives (pipelining) instead of waiting for its whole segment.
 */
export type Phase = "reduce-scatter" | "all-gather";

export const mod = (a: number, n: number): number => ((a % n) + n) % n;

export function stepsPerPhase(n: number): number {
  return n - 1;
}

export function sendSegment(phase: Phase, step: number, position: number, n: number): number {
  return phase === "reduce-scatter" ? mod(position - 1 - step, n) : mod(position - step, n);
}

export function receiveSegment(phase: Phase, step: number, position: number, n: number): number {
  return phase === "reduce-scatter" ? mod(position - 2 - step, n) : mod(position - 1 - step, n);
}

export function leftOf(position: number, n: number): number {
  return mod(position - 1, n);
}

export function rightOf(position: number, n: number): number {
  return mod(position + 1, n);
}
