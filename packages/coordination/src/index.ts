export { Coordinator, DEFAULT_LINEAGE_ROUNDS, type AuditSlot, type CoordinatorSnapshot, type CoordinatorStatus, type PendingStage, type UploadSlot } from "./coordinator.ts";
export { Audits, type AuditCandidate, type PendingAudit } from "./audits.ts";
export { Lineage, type LineageEntry, type RollbackTarget } from "./lineage.ts";
export { Accusations, type Accusation } from "./accusations.ts";
export { apportion, splitBatch } from "./leases.ts";
export { Membership } from "./membership.ts";
export { epochOrder, mulberry32 } from "./permutation.ts";
export { disputeBackoffMs, MIN_OUTLIER_PLAN, outliers, separateAccused, tally, type Tally } from "./rounds.ts";
export {
  buildPlan,
  gridFor,
  gridSteps,
  groupsShape,
  GROUPS_ATTACH_COST_STEPS,
  GROUPS_AUTO_MIN_MEMBERS,
  GROUPS_MAX_ATTACHED_SHARE,
  GROUPS_MAX_FACTOR,
  torusFor,
  torusShape,
  TORUS_AUTO_ATTACH_MIN_MEMBERS,
  TORUS_AUTO_MIN_MEMBERS,
  type GroupsShape,
  type PlanSettings,
  type PlanShape,
  type TorusShape,
} from "./plans.ts";
export { keepStages, pipelineLoss, pipelineTally, shareBatch, type PipelineTally, type StageHeld } from "./pipeline-rounds.ts";
export { Sampler, type SamplerSnapshot } from "./sampler.ts";
export type * from "./types.ts";
