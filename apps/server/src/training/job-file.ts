import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { JobError, parseJob, type Job } from "@crowdtrain/protocol";

/** The job `npm start` runs when no --job is given. */
export const DEFAULT_JOB_FILE = resolve(import.meta.dirname, "../../jobs/mnist-mlp.json");

/** Reads and validates a job file; the error names the file and lists every problem. */
export async function readJobFile(path: string): Promise<Job> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read job file ${path}: ${(error as Error).message}`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`job file ${path} is not JSON: ${(error as Error).message}`, { cause: error });
  }
  try {
    return parseJob(json);
  } catch (error) {
    if (error instanceof JobError) throw new Error(`job file ${path}: ${error.message}`, { cause: error });
    throw error;
  }
}
