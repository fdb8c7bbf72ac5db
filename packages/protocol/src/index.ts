export * from "./frames.ts";
export * from "./version.ts";
