import { encodeShard } from "../../dataset.ts";
import type { SplitSelection } from "./split.ts";

/**
 * Cutting a split into shards of bounded size: a few MB each keeps workers' fetches and caching
 * granular (DATASETS.md), whatever the sample size (8 CSV features or 224x224x3 pixels).
 */
export const SHARD_TARGET_BYTES = 2 * 1024 ** 2;
/** Caps tiny samples too: a shard of 8-byte rows still holds at most this many. */
export const MAX_SHARD_SAMPLES = 65_536;

export interface ShardEntry {
  file: string;
  count: number;
}

export function samplesPerShard(featureBytes: number): number {
  return Math.max(1, Math.min(MAX_SHARD_SAMPLES, Math.floor(SHARD_TARGET_BYTES / (featureBytes + 1))));
}

/** `prefix-000.ctds`, `prefix-001.ctds`, ...; their counts add up to `count`. */
export function planShards(prefix: string, count: number, featureBytes: number): ShardEntry[] {
  const per = samplesPerShard(featureBytes);
  const shards: ShardEntry[] = [];
  for (let start = 0, k = 0; start < count; start += per, k++) {
    shards.push({ file: `${prefix}-${String(k).padStart(3, "0")}.ctds`, count: Math.min(per, count - start) });
  }
  return shards;
}

/** The encoded shard of `count` samples starting at position `start` of the split's order. */
export function gatherShard(selection: SplitSelection, start: number, count: number): Uint8Array {
  const { samples, order } = selection;
  const { featureBytes } = samples;
  const features = new Uint8Array(count * featureBytes);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    const sample = order[start + i] as number;
    features.set(samples.features.subarray(sample * featureBytes, (sample + 1) * featureBytes), i * featureBytes);
    labels[i] = samples.labels[sample] as number;
  }
  return encodeShard({ featureBytes, features, labels });
}
