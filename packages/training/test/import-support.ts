import { parseCommand, type ImportCommand } from "../src/node/import/cli-args.ts";

/** An import command line as the CLI would parse it; a test never means --help. */
export const command = (args: string[]): ImportCommand => {
  const parsed = parseCommand(args);
  if (parsed.kind === "help") throw new Error("parsed as help");
  return parsed;
};
