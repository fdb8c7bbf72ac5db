import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import * as v from "valibot";
import type { CoordinatorSnapshot } from "@crowdtrain/coordination";
import { MAX_ATTEMPT, StateHashSchema, type EvalPoint, type Job, type RoundPoint } from "@crowdtrain/protocol";
import { decodeState, stateProblem, type ModelState, type StateHasher } from "@crowdtrain/training";

/**
 * Checkpoints: everything a restarted server needs to carry on where a committed round left off —
 * the model state (weights + optimizer), the coordinator's snapshot as of that round (epoch, sample
 * queue and coverage, attempt counter) and the metrics history.
 *
 * Layout under <dataDir>/checkpoints/<job name>/:
 *   round-<r>/checkpoint.json   snapshot + metrics + the job it belongs to
 *   round-<r>/state.bin         the model state (packages/training state codec)
 *   latest.json                 {"round": r}: which directory is current
 * A checkpoint is written into a temporary directory, flushed, renamed into place, and only then
 * named in latest.json (itself replaced by rename), so a crash at any point leaves the previous
 * checkpoint intact. The last KEEP checkpoints are kept.
 */
const KEEP = 2;
const VERSION = 2;

export type CheckpointData = {
  version: typeof VERSION;
  job: Job;
  round: number;
  savedAt: number;
  snapshot: CoordinatorSnapshot;
  metrics: { rounds: RoundPoint[]; evals: EvalPoint[]; samplesSeen: number };
};

const CheckpointSchema = v.looseObject({
  version: v.literal(VERSION),
  job: v.looseObject({ name: v.string() }),
  round: v.pipe(v.number(), v.integer(), v.minValue(0)),
  savedAt: v.number(),
  snapshot: v.looseObject({
    committedRound: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_ATTEMPT)),
    committedHash: StateHashSchema,
    queue: v.array(v.pipe(v.number(), v.integer(), v.minValue(0))),
    uses: v.array(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(255))),
    // One past the last attempt issued; every worker's reducer takes ids up to MAX_ATTEMPT.
    nextAttempt: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_ATTEMPT + 1)),
    maxRounds: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1)))),
  }),
  metrics: v.looseObject({ rounds: v.array(v.unknown()), evals: v.array(v.unknown()), samplesSeen: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER)) }),
});
const LatestSchema = v.object({ round: v.pipe(v.number(), v.integer(), v.minValue(0)) });

export class CheckpointError extends Error {
  override name = "CheckpointError";
}

export class CheckpointStore {
  readonly dir: string;

  constructor(dataDir: string, jobName: string) {
    this.dir = join(dataDir, "checkpoints", jobName);
  }

  async save(data: CheckpointData, state: Uint8Array): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const final = join(this.dir, `round-${data.round}`);
    const temp = join(this.dir, `.round-${data.round}.tmp-${process.pid}-${Date.now()}`);
    await mkdir(temp);
    await writeDurably(join(temp, "state.bin"), state);
    await writeDurably(join(temp, "checkpoint.json"), JSON.stringify(data));
    await rm(final, { recursive: true, force: true });
    await rename(temp, final);
    const latestTemp = join(this.dir, `.latest.json.tmp-${process.pid}`);
    await writeDurably(latestTemp, JSON.stringify({ round: data.round }));
    await rename(latestTemp, join(this.dir, "latest.json"));
    await this.prune(data.round);
    return final;
  }

  /** The latest checkpoint, or undefined when there is none. Throws CheckpointError when it is unreadable or for another job. */
  /** `hashOf`: the job's state hasher (a pipeline job's hashes by layers). */
  async load(job: Job, hashOf?: StateHasher): Promise<{ data: CheckpointData; state: ModelState } | undefined> {
    let latestText: string;
    try {
      latestText = await readFile(join(this.dir, "latest.json"), "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const latest = parseWith(LatestSchema, latestText, join(this.dir, "latest.json"));
    const dir = join(this.dir, `round-${latest.round}`);
    const data = parseWith(CheckpointSchema, await readFile(join(dir, "checkpoint.json"), "utf8"), join(dir, "checkpoint.json")) as unknown as CheckpointData;
    if (JSON.stringify(data.job) !== JSON.stringify(job)) {
      throw new CheckpointError(`the checkpoint in ${dir} belongs to a different job definition; move ${this.dir} away (or use another --data-dir) to start afresh`);
    }
    let state: ModelState;
    try {
      state = decodeState(await readFile(join(dir, "state.bin")));
    } catch (error) {
      throw new CheckpointError(`${join(dir, "state.bin")}: ${String(error)}`, { cause: error });
    }
    if (state.round !== data.round) throw new CheckpointError(`${dir}: state is round ${state.round}, checkpoint says ${data.round}`);
    const problem = stateProblem(state, hashOf);
    if (problem !== undefined) throw new CheckpointError(`${join(dir, "state.bin")}: ${problem}`);
    if (data.snapshot.committedHash !== state.hash) {
      throw new CheckpointError(`${dir}: the state hashes to ${state.hash}, the coordinator committed ${data.snapshot.committedHash}`);
    }
    return { data, state };
  }

  private async prune(current: number): Promise<void> {
    const rounds = (await readdir(this.dir))
      .map((name) => /^round-(\d+)$/.exec(name))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .filter((r) => r !== current)
      .sort((a, b) => b - a);
    for (const round of rounds.slice(KEEP - 1)) await rm(join(this.dir, `round-${round}`), { recursive: true, force: true });
  }
}

/** Writes and fsyncs a file, so a rename after it never exposes a half-written file after a crash. */
async function writeDurably(path: string, data: Uint8Array | string): Promise<void> {
  const handle = await open(path, "w");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function parseWith<S extends v.GenericSchema>(schema: S, text: string, file: string): v.InferOutput<S> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(`${file} is not JSON: ${String(error)}`, { cause: error });
  }
  const result = v.safeParse(schema, json);
  if (!result.success) throw new CheckpointError(`${file}: ${v.summarize(result.issues)}`);
  return result.output;
}
