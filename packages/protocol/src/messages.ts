import * as v from "valibot";
import { JobSchema } from "./job.ts";
import { MAX_PLAN_MEMBERS, PlanSchema } from "./plan.ts";
import { MAX_LAYER_HASHES, PipelinePlanSchema } from "./pipeline.ts";
import { PROTOCOL_VERSION } from "./version.ts";

/**
 * Messages between a worker tab and the coordinator, over the server's WebSocket (`/ws`), as JSON.
 * One union per direction, string-tagged by `type`, parsed once at each boundary with
 * `parseWorkerMessage` / `parseCoordinatorMessage`. Every number is bounded by what it means, so
 * nothing a worker sends can push a counter of the server to Infinity or past what a peer accepts.
 */

/** Largest all-reduce attempt id: it travels as a u32 in every frame header. */
export const MAX_ATTEMPT = 0xffffffff;
/** Largest sample count of one lease: a float32 carries every integer up to 2^24 exactly. */
export const MAX_LEASE_SAMPLES = 2 ** 24;
/** A phase of a round longer than a day is a lie, not a slow laptop. */
const MAX_PHASE_MS = 86_400_000;

/** Server-issued ids: PeerJS accepts [A-Za-z0-9] runs joined by single '-', '_' or ' '. */
export const PeerIdSchema = v.pipe(v.string(), v.regex(/^[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*$/), v.maxLength(64));
const Count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));
const Attempt = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_ATTEMPT));
const Round = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_ATTEMPT));
const Ms = v.pipe(v.number(), v.minValue(0), v.maxValue(MAX_PHASE_MS));
/** SHA-256 of a model state (weights and optimizer state), lower-case hex. */
export const StateHashSchema = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));
/** Secrets the server issues: 128 bits or more, base64url. */
const Secret = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{22,86}$/));
/** Free text shown to people (names, reasons): bounded, and always rendered as text. */
const Text = v.pipe(v.string(), v.maxLength(500));

export const BackendSchema = v.picklist(["webgpu", "webgl", "wasm", "cpu"]);
export type Backend = v.InferOutput<typeof BackendSchema>;

/**
 * What a member does. A round takes only "trainer" members (data parallel: each computes gradients
 * on its lease and averages them). A "server" answers inference requests over the serve socket and
 * is never in a round: a tab joins as one (`?role=server`) or the autoscaler moves a trainer there
 * and back (the `role` message). "stage" (one slice of a model split across tabs) joins without
 * being put in rounds until the plans that use it exist.
 */
export const MemberRoleSchema = v.picklist(["trainer", "stage", "server"]);
export type MemberRole = v.InferOutput<typeof MemberRoleSchema>;

export const RoundTimingsSchema = v.object({
  computeMs: Ms,
  readbackMs: Ms,
  allReduceMs: Ms,
  updateMs: Ms,
  /**
   * A pipeline stage: the time it computed within its stage's span (computeMs is the whole span,
   * from its first op to its gradient); the rest it waited for its neighbours, the pipeline's bubble.
   */
  stageBusyMs: v.optional(Ms),
});
export type RoundTimings = v.InferOutput<typeof RoundTimingsSchema>;

/**
 * The one definition of a member's compute time for a lease: recording and dispatching the work
 * plus the read-back. On a GPU `computeMs` alone is only the dispatch, and the read-back waits for
 * the queued work to finish, so leaving it out made GPUs look several times faster than they are.
 */
export function computeTimeMs(timings: Pick<RoundTimings, "computeMs" | "readbackMs">): number {
  return timings.computeMs + timings.readbackMs;
}

/**
 * Samples per second of a lease done in `ms`, the speed leases are split by. The coordinator feeds
 * it the time it measured itself (round open to the member entering the all-reduce: compute time
 * plus the messages' latency), never a member's claim; a worker page shows its own computeTimeMs.
 * At least 1 ms, so an instant answer is fast rather than infinite.
 */
export function leaseSpeed(samples: number, ms: number): number {
  return samples / (Math.max(ms, 1) / 1000);
}

/** Why an all-reduce failed, as the worker's all-reducer names it (see @crowdtrain/allreduce errors.ts). */
export const FailureCodeSchema = v.picklist(["peer-gone", "timeout", "bad-frame", "bad-input", "aborted", "closed", "no-samples"]);
export type FailureCode = v.InferOutput<typeof FailureCodeSchema>;

// ---- worker -> coordinator ----

/** Largest memory a hello may claim (1 TiB): a bound on the field, not a judgement of any machine. */
export const MAX_MEMORY_MIB = 1 << 20;

export const HelloSchema = v.strictObject({
  type: v.literal("hello"),
  protocol: v.literal(PROTOCOL_VERSION),
  name: v.optional(v.pipe(v.string(), v.maxLength(64))),
  backend: BackendSchema,
  adapter: v.optional(Text),
  /** The operator's join token, required when the job is private (`--join-token`). */
  joinToken: v.optional(v.pipe(v.string(), v.maxLength(256))),
  /** What this tab offers; default "trainer". */
  role: v.optional(MemberRoleSchema),
  /**
   * Memory this tab lends, in MiB, when its volunteer set it (`?memoryMiB=`): a trainer whose job's
   * model, gradient, optimizer state and batch activations need more is told so at hello and not admitted.
   */
  memoryMiB: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_MEMORY_MIB))),
});

/** "I hold the committed state of `round`": the worker may be put in the next round. */
export const ReadySchema = v.strictObject({ type: v.literal("ready"), round: Round, hash: StateHashSchema });

export const ResultSchema = v.strictObject({
  type: v.literal("result"),
  attempt: Attempt,
  /** Hash of the state after applying this attempt's update (not adopted until the commit). */
  hash: StateHashSchema,
  /** Samples the gradient was computed on: must equal the lease. */
  samples: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(MAX_LEASE_SAMPLES)),
  loss: v.pipe(v.number(), v.finite()),
  timings: RoundTimingsSchema,
  bytesSent: Count,
  bytesReceived: Count,
  /**
   * As a shard owner of a direct plan with robust aggregation: the contributors whose shard lay
   * far outside the clipping radius tau (tau = twice the median distance to the coordinate-wise
   * median; the worker reports beyond 4 tau). The coordinator strikes a member that a strict
   * majority of owners name.
   */
  clipped: v.optional(v.pipe(v.array(PeerIdSchema), v.maxLength(MAX_PLAN_MEMBERS))),
  /**
   * A pipeline round's stage: the hash of each of its layers' state after the update (training's
   * layerHashes), in layer order; `hash` is their combination. The coordinator combines every
   * stage's into the round's hash, so no member needs the whole model to commit it.
   */
  layerHashes: v.optional(v.pipe(v.array(StateHashSchema), v.minLength(1), v.maxLength(MAX_LAYER_HASHES))),
});

export const FailedSchema = v.strictObject({
  type: v.literal("failed"),
  attempt: Attempt,
  code: FailureCodeSchema,
  suspect: v.optional(PeerIdSchema),
  message: Text,
});

/** SHA-256 of a contribution (the gradient's float32 words, little-endian), lower-case hex. */
export const DigestSchema = StateHashSchema;

/**
 * Where a member is within an attempt. "reducing" carries the digest of the contribution it is
 * about to send, committed before the all-reduce starts: a spot check later compares what the
 * member uploads against it, so it cannot swap in an honest vector once it knows it is audited.
 */
export const PhaseSchema = v.strictObject({
  type: v.literal("phase"),
  attempt: Attempt,
  phase: v.picklist(["computing", "reducing"]),
  digest: v.optional(DigestSchema),
});

export const WorkerMessageSchema = v.variant("type", [HelloSchema, ReadySchema, ResultSchema, FailedSchema, PhaseSchema]);
export type WorkerMessage = v.InferOutput<typeof WorkerMessageSchema>;

// ---- coordinator -> worker ----

/**
 * Who this worker is, issued by the server at hello: one id for the coordinator and for PeerJS
 * (whose server accepts only issued ids, with this key and token), and the secret that HTTP
 * requests acting for this worker carry (`Authorization: Bearer <sessionToken>`).
 */
export const IdentitySchema = v.strictObject({
  peerId: PeerIdSchema,
  sessionToken: Secret,
  peerKey: Secret,
  peerToken: Secret,
});
export type Identity = v.InferOutput<typeof IdentitySchema>;

export const WelcomeSchema = v.strictObject({
  type: v.literal("welcome"),
  protocol: v.literal(PROTOCOL_VERSION),
  identity: IdentitySchema,
  job: JobSchema,
  /** Committed round the server can hand out state for (GET /api/state). */
  round: Round,
});

const LeaseSchema = v.pipe(v.array(v.pipe(v.number(), v.integer(), v.minValue(0))), v.maxLength(MAX_LEASE_SAMPLES));

export const OpenRoundSchema = v.strictObject({
  type: v.literal("round"),
  /** All-reduce attempt id: unique and increasing, a redone round gets a new one. */
  attempt: Attempt,
  /** Index of the round being computed: the committed round it starts from, plus one. */
  round: Round,
  epoch: Round,
  /**
   * Who averages with whom, and how. Absent when it is the plan this connection last received in
   * full under `planId`: a plan names every member, so at N members sending it every round costs
   * N² bytes a round (measured with `npm run bench:load`: 29 KB per member at 1,000 workers).
   */
  plan: v.optional(PlanSchema),
  /** The plan's number on this connection (the server's encoder numbers distinct plans). */
  planId: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER))),
  /** Training sample indices this worker computes its gradient on. */
  lease: LeaseSchema,
  /**
   * This worker's lease of the *next* round, if it will start from this one's commit (overlap): the
   * worker computes on its pending weights while it waits for the commit, and uses the result when
   * the next round brings this very lease; otherwise (an abort, another split) it drops the work.
   */
  next: v.optional(LeaseSchema),
  frameBytes: v.pipe(v.number(), v.integer(), v.minValue(4), v.maxValue(1 << 20)),
  /**
   * This worker uploads its pending state (PUT /api/state/<round>) as soon as it has reported: the
   * server checks it, and adopts it once the round commits with its hash.
   */
  upload: v.boolean(),
  /**
   * A pipeline round (the job has parallelism.stages above 1): the whole plan of replicas × stages.
   * The worker computes its stage of its replica on `lease` (the replica's samples, the same for
   * each of its stages), and `plan` is then the ring of its stage's members, which average that
   * stage's gradient. Its `upload` is its stage's pending state; the round commits once the server
   * checked every stage's.
   */
  pipeline: v.optional(PipelinePlanSchema),
});

export const CommitSchema = v.strictObject({ type: v.literal("commit"), attempt: Attempt, round: Round, hash: StateHashSchema });
export const AbortSchema = v.strictObject({ type: v.literal("abort"), attempt: Attempt, reason: Text });
/** "Your state is behind: fetch the committed state of `round` (GET /api/state) and say ready again." */
export const SyncSchema = v.strictObject({ type: v.literal("sync"), round: Round });
/** "The server still lacks the committed state of `round`: upload yours (PUT /api/state/<round>)." */
export const UploadSchema = v.strictObject({ type: v.literal("upload"), round: Round });
export const StopSchema = v.strictObject({ type: v.literal("stop"), reason: Text });
/**
 * "Your contribution to committed `round` is spot-checked: upload it (PUT /api/contribution/<round>)."
 * The server recomputes the lease on its CPU backend and compares.
 */
export const AuditSchema = v.strictObject({ type: v.literal("audit"), round: Round, attempt: Attempt });

/**
 * "Your role is now `role`": the autoscaler moved this member between training and serving. Sent
 * only between rounds (after the commit of a round the member was in). A "server" member opens the
 * serve socket (/ws/serve) and answers inference requests; back as "trainer", it closes it and is
 * asked to sync.
 */
export const RoleSchema = v.strictObject({ type: v.literal("role"), role: MemberRoleSchema });

export const CoordinatorMessageSchema = v.variant("type", [
  RoleSchema,
  WelcomeSchema,
  OpenRoundSchema,
  CommitSchema,
  AbortSchema,
  SyncSchema,
  UploadSchema,
  StopSchema,
  AuditSchema,
]);
export type CoordinatorMessage = v.InferOutput<typeof CoordinatorMessageSchema>;

export class MessageError extends Error {
  override name = "MessageError";
}

/**
 * Parses one JSON message by its schema; a message that is not JSON or does not fit is thrown as
 * `fail`'s error (each boundary names its own error class), naming every problem.
 */
export function parseJsonWith<S extends v.GenericSchema>(schema: S, what: string, raw: string, fail: (message: string) => Error = (m) => new MessageError(m)): v.InferOutput<S> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (error) {
    throw fail(`${what} is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const result = v.safeParse(optionFor(schema, json) ?? schema, json);
  if (!result.success) throw fail(`bad ${what}: ${v.summarize(result.issues)}`);
  return result.output as v.InferOutput<S>;
}

/** What parseJsonWith reads of a variant schema: its key, its options' literal tags, and a pipe if it has one. */
type TaggedUnion = { type: "variant"; key: string; options: readonly { entries?: Record<string, { type: string; literal?: unknown }> }[]; pipe?: unknown };
/** Each variant's options by their tag, found once per schema. */
const optionsByTag = new WeakMap<object, ReadonlyMap<unknown, v.GenericSchema>>();

/**
 * The option of a variant schema that `json`'s tag names, so it is parsed by that option alone:
 * valibot's variant tries its options in turn, a third of the parse time of the results and phases
 * 1,000 workers send each round (npm run bench:load). Undefined whenever the lookup could read
 * differently from the variant: no variant, a piped one (its checks would be skipped), a tag two
 * options share (the variant tries both), or a tag no option has. The variant then parses it.
 */
function optionFor(schema: v.GenericSchema, json: unknown): v.GenericSchema | undefined {
  const union = schema as unknown as TaggedUnion;
  if (union.type !== "variant" || union.pipe !== undefined || json === null || typeof json !== "object") return undefined;
  let options = optionsByTag.get(schema);
  if (options === undefined) {
    const byTag = new Map<unknown, v.GenericSchema | undefined>();
    for (const option of union.options) {
      const tag = option.entries?.[union.key];
      if (tag?.type !== "literal") continue;
      byTag.set(tag.literal, byTag.has(tag.literal) ? undefined : (option as unknown as v.GenericSchema));
    }
    options = new Map([...byTag].flatMap(([tag, option]) => (option === undefined ? [] : [[tag, option] as const])));
    optionsByTag.set(schema, options);
  }
  return options.get((json as Record<string, unknown>)[union.key]);
}

export const parseWorkerMessage = (raw: string): WorkerMessage => parseJsonWith(WorkerMessageSchema, "worker message", raw);
export const parseCoordinatorMessage = (raw: string): CoordinatorMessage => parseJsonWith(CoordinatorMessageSchema, "coordinator message", raw);
