export { Coordinator, type CoordinatorSnapshot, type CoordinatorStatus, type UploadSlot } from "./coordinator.ts";
export { Accusations, type Accusation } from "./accusations.ts";
export { apportion, splitBatch } from "./leases.ts";
export { Membership } from "./membership.ts";
export { epochOrder, mulberry32 } from "./permutation.ts";
export { disputeBackoffMs, MIN_OUTLIER_PLAN, outliers, separateAccused, tally, type Tally } from "./rounds.ts";
export { Sampler, type SamplerSnapshot } from "./sampler.ts";
export type * from "./types.ts";
