/**
 * @crowdtrain/training: models, flat weights and gradients, deterministic optimizers, dataset
 * shards, evaluation. Safe in Node (CPU backend) and in the browser; Node-only code lives in
 * "./node", the WebGPU backend in "./browser".
 */
export * from "./dataset.ts";
export * from "./layers.ts";
export * from "./models.ts";
export * from "./weights.ts";
export * from "./hash.ts";
export * from "./gradients.ts";
export * from "./optimizers.ts";
export * from "./evaluate.ts";
export * from "./predict.ts";
export * from "./backend.ts";
export * from "./state.ts";
export * from "./size.ts";
export * from "./audit.ts";
export * from "./inner-steps.ts";
