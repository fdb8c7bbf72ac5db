import * as v from "valibot";
import { JobSchema } from "./job.ts";
import { PROTOCOL_VERSION } from "./version.ts";

/**
 * Messages between a worker tab and the coordinator, over the server's WebSocket (`/ws`), as JSON.
 * One union per direction, string-tagged by `type`, parsed once at each boundary with
 * `parseWorkerMessage` / `parseCoordinatorMessage`.
 */
const Id = v.pipe(v.string(), v.minLength(1), v.maxLength(128));
const Count = v.pipe(v.number(), v.integer(), v.minValue(0));
const Ms = v.pipe(v.number(), v.minValue(0));
const Hash = v.pipe(v.string(), v.regex(/^[0-9a-f]{16,64}$/));
/** Free text shown to people (names, reasons): bounded, and always rendered as text. */
const Text = v.pipe(v.string(), v.maxLength(500));

export const BackendSchema = v.picklist(["webgpu", "webgl", "wasm", "cpu"]);
export type Backend = v.InferOutput<typeof BackendSchema>;

export const RoundTimingsSchema = v.object({
  computeMs: Ms,
  readbackMs: Ms,
  allReduceMs: Ms,
  updateMs: Ms,
});
export type RoundTimings = v.InferOutput<typeof RoundTimingsSchema>;

// ---- worker -> coordinator ----

export const HelloSchema = v.object({
  type: v.literal("hello"),
  protocol: v.literal(PROTOCOL_VERSION),
  peerId: Id,
  name: v.optional(Text),
  backend: BackendSchema,
  adapter: v.optional(Text),
  /**
   * Highest all-reduce attempt this worker has run. After a server restart the coordinator's
   * attempt counter comes from its checkpoint; it continues above every worker's, since a worker's
   * all-reducer only accepts increasing round ids.
   */
  lastAttempt: v.optional(Count),
});

/** "I hold the committed state of `round`": the worker may be put in the next ring. */
export const ReadySchema = v.object({ type: v.literal("ready"), round: Count, hash: Hash });

export const ResultSchema = v.object({
  type: v.literal("result"),
  attempt: Count,
  /** Hash of the weights after applying this attempt's update (not yet adopted until commit). */
  hash: Hash,
  samples: Count,
  loss: v.number(),
  timings: RoundTimingsSchema,
  bytesSent: Count,
  bytesReceived: Count,
});

export const FailedSchema = v.object({
  type: v.literal("failed"),
  attempt: Count,
  code: v.pipe(v.string(), v.maxLength(32)),
  suspect: v.optional(Id),
  message: Text,
});

/** Where a ring member is within an attempt, for the dashboard (the coordinator does not need it). */
export const PhaseSchema = v.object({ type: v.literal("phase"), attempt: Count, phase: v.picklist(["computing", "reducing"]) });

export const WorkerMessageSchema = v.variant("type", [HelloSchema, ReadySchema, ResultSchema, FailedSchema, PhaseSchema]);
export type WorkerMessage = v.InferOutput<typeof WorkerMessageSchema>;

// ---- coordinator -> worker ----

export const WelcomeSchema = v.object({
  type: v.literal("welcome"),
  protocol: v.literal(PROTOCOL_VERSION),
  job: JobSchema,
  /** Committed round the server can hand out state for (GET /api/state). */
  round: Count,
});

export const OpenRoundSchema = v.object({
  type: v.literal("round"),
  /** All-reduce attempt id: unique and increasing, a redone round gets a new one. */
  attempt: Count,
  /** Index of the round being computed: the committed round it starts from, plus one. */
  round: Count,
  epoch: Count,
  ring: v.array(Id),
  /** Training sample indices this worker computes its gradient on. */
  lease: v.array(Count),
  frameBytes: Count,
  /** This worker uploads the new state to the server once the round commits. */
  upload: v.boolean(),
});

export const CommitSchema = v.object({ type: v.literal("commit"), attempt: Count, round: Count, hash: Hash });
export const AbortSchema = v.object({ type: v.literal("abort"), attempt: Count, reason: Text });
/** "Your state is behind: fetch the committed state of `round` (GET /api/state) and say ready again." */
export const SyncSchema = v.object({ type: v.literal("sync"), round: Count });
export const StopSchema = v.object({ type: v.literal("stop"), reason: Text });

export const CoordinatorMessageSchema = v.variant("type", [WelcomeSchema, OpenRoundSchema, CommitSchema, AbortSchema, SyncSchema, StopSchema]);
export type CoordinatorMessage = v.InferOutput<typeof CoordinatorMessageSchema>;

export class MessageError extends Error {
  override name = "MessageError";
}

function parseWith<S extends v.GenericSchema>(schema: S, what: string, raw: string): v.InferOutput<S> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (error) {
    throw new MessageError(`${what} is not JSON: ${String(error)}`);
  }
  const result = v.safeParse(schema, json);
  if (!result.success) throw new MessageError(`bad ${what}: ${v.summarize(result.issues)}`);
  return result.output;
}

export const parseWorkerMessage = (raw: string): WorkerMessage => parseWith(WorkerMessageSchema, "worker message", raw);
export const parseCoordinatorMessage = (raw: string): CoordinatorMessage => parseWith(CoordinatorMessageSchema, "coordinator message", raw);
