export * from "./frames.ts";
export * from "./version.ts";
export * from "./job.ts";
export * from "./messages.ts";
export * from "./plan.ts";
export * from "./status.ts";
export * from "./admin.ts";
