/** Seeded sample orders: the same (seed, epoch) gives the same order on any machine. */

import { mulberry32 } from "@crowdtrain/protocol";

// Re-exported: the coordinator's audit draws and code importing it from @crowdtrain/coordination use it.
export { mulberry32 };

/** Fisher-Yates shuffle of 0..count-1 for one epoch. */
export function epochOrder(count: number, seed: number, epoch: number): number[] {
  const random = mulberry32((seed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0);
  const order = Array.from({ length: count }, (_, k) => k);
  for (let k = count - 1; k > 0; k--) {
    const j = Math.floor(random() * (k + 1));
    const tmp = order[k] as number;
    order[k] = order[j] as number;
    order[j] = tmp;
  }
  return order;
}
