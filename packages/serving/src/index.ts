export * from "./autoscaler.ts";
export * from "./batcher.ts";
export * from "./dispatcher.ts";
export * from "./stats.ts";
