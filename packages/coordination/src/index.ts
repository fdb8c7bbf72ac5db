export { Coordinator, type CoordinatorSnapshot, type CoordinatorStatus } from "./coordinator.ts";
export { apportion, splitBatch } from "./leases.ts";
export { epochOrder, mulberry32 } from "./permutation.ts";
export type * from "./types.ts";
