/** Node-only entry (uses node:fs): building and reading dataset directories on the server. */
export * from "./mnist-build.ts";
export * from "./dataset-fs.ts";
export * from "./sha256.ts";
