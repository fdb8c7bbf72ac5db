import { shuffledOrder } from "../shuffle.ts";
import { ImportError, fmt } from "./errors.ts";

/**
 * Seeded order and train/test split. The order is part of the data (leases refer to samples by
 * index), so it must be the same on every machine: Mulberry32, never Math.random.
 */

/** Samples in memory: `labels.length` samples of `featureBytes` uint8 features each, sample-major. */
export interface Samples {
  featureBytes: number;
  features: Uint8Array;
  labels: Uint8Array;
}

/** Which samples (indices into `samples`) form a split, in their final order. */
export interface SplitSelection {
  samples: Samples;
  order: Uint32Array;
}

export interface SplitPlan {
  train: SplitSelection;
  test: SplitSelection;
}

export const DEFAULT_SEED = 0x5eed_2024;
export const DEFAULT_TEST_FRACTION = 0.2;


/** Test samples held out of `count`: round(count * fraction), but at least one in each split. */
export function testCount(count: number, fraction: number): number {
  if (count < 2) throw new ImportError(`only ${count} sample${count === 1 ? "" : "s"}: a train and a test split need at least 2`);
  return Math.min(count - 1, Math.max(1, Math.round(count * fraction)));
}

/** One shuffle of all samples; the last `testCount` of that order are the test split. */
export function holdOut(samples: Samples, fraction: number, seed: number): SplitPlan {
  const count = samples.labels.length;
  const test = testCount(count, fraction);
  const order = shuffledOrder(count, seed);
  return {
    train: { samples, order: order.subarray(0, count - test) },
    test: { samples, order: order.subarray(count - test) },
  };
}

/** Given train and test sets (IDX with test files): each shuffled on its own, with distinct seeds. */
export function shuffleEach(train: Samples, test: Samples, seed: number): SplitPlan {
  if (train.labels.length === 0) throw new ImportError("the train files hold no samples");
  if (train.featureBytes !== test.featureBytes) {
    throw new ImportError(`train samples have ${fmt(train.featureBytes)} features but test samples ${fmt(test.featureBytes)}`);
  }
  return {
    train: { samples: train, order: shuffledOrder(train.labels.length, seed) },
    // A different stream for the test order, so the two splits are not shuffled alike.
    test: { samples: test, order: shuffledOrder(test.labels.length, (seed ^ 0x9e37_79b9) >>> 0) },
  };
}
