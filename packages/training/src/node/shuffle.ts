import { mulberry32Uint32 } from "@crowdtrain/protocol";

/**
 * A seeded permutation of 0..count-1: Fisher-Yates with an exact integer draw (u32 * (i+1) < 2^53,
 * so the float math is exact). Dataset builders shuffle once with it: the order is part of the
 * data (leases refer to samples by index), so every machine must get the same one.
 */
export function shuffledOrder(count: number, seed: number): Uint32Array {
  const order = new Uint32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  const next = mulberry32Uint32(seed);
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor((next() * (i + 1)) / 2 ** 32);
    const tmp = order[i] as number;
    order[i] = order[j] as number;
    order[j] = tmp;
  }
  return order;
}
