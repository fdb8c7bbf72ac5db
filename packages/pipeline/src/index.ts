/**
 * @crowdtrain/pipeline: pipeline (model) parallelism. Pure: the schedule (GPipe, 1F1B) and its
 * simulator, the model's cut into stages by cost and memory, the plan of replicas × stages, the
 * activation frames' assembly and checks, a stage's share of the model state. With tfjs: a stage's
 * forward and backward, and the runner of one stage through one round.
 */
export * from "./schedule.ts";
export * from "./partition.ts";
export * from "./plan-builder.ts";
export * from "./assembler.ts";
export * from "./inbox.ts";
export * from "./stage-compute.ts";
export * from "./runner.ts";
export * from "./stage-state.ts";
