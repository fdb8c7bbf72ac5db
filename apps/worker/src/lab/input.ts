// Deterministic all-reduce inputs, shared by the lab page and the e2e tests that check its results.
// No imports: Node (Playwright) and the browser both load this file.

/** Element i of tab input `seed`; the float64 value, which Float32Array storage rounds once. */
export function labInputValue(seed: number, i: number): number {
  return Math.sin(seed * 7919 + i * 0.001) * (1 + (i % 7));
}

export function labInput(seed: number, length: number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = labInputValue(seed, i);
  return out;
}
