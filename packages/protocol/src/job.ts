import * as v from "valibot";
import { AggregationSchema } from "./plan.ts";
import { DEFAULT_PARALLELISM, ParallelismSchema } from "./pipeline.ts";

/**
 * A training job, as an operator writes it in a JSON file. Parsed with `parseJob`, which returns
 * every problem with its path ("optimizer.learningRate: ...") instead of the first one only.
 */
const PositiveInt = v.pipe(v.number(), v.integer(), v.minValue(1));
const Rate = v.pipe(v.number(), v.gtValue(0), v.maxValue(10));

/**
 * Upper bounds on the model's size. A job file is operator input, but a typo (`hidden: [1e9]`) used to
 * fail deep in TF.js ("Invalid typed array length") without naming the field, after the server had
 * tried to allocate it. These refuse at parse time, with the path; the server still checks the
 * job's whole parameter count against its memory (packages/training size.ts), since a few layers
 * each within bounds can still be too big together.
 */
export const MAX_DENSE_UNITS = 16_384;
export const MAX_CNN_FILTERS = 1_024;
/** 11x11 is the largest kernel in common use (AlexNet's first layer). */
export const MAX_KERNEL_SIZE = 11;
/** The global batch: samples leased out in one round. */
export const MAX_BATCH_SIZE = 65_536;
/** Probability that a member's contribution to a committed round is audited (BOINC-style replication, sampled). */
export const DEFAULT_SPOT_CHECK = 0.1;

const boundedInt = (max: number, what: string) => v.pipe(PositiveInt, v.maxValue(max, `at most ${max} ${what}`));

export const MlpModelSchema = v.strictObject({
  kind: v.literal("mlp"),
  /** Hidden layer widths; the input and the softmax output come from the dataset. */
  hidden: v.pipe(v.array(boundedInt(MAX_DENSE_UNITS, "units")), v.maxLength(8)),
  activation: v.optional(v.picklist(["relu", "tanh", "sigmoid"]), "relu"),
});

export const CnnModelSchema = v.strictObject({
  kind: v.literal("cnn"),
  /** Filters of each conv(3x3, relu) + maxpool(2x2) block. */
  filters: v.pipe(v.array(boundedInt(MAX_CNN_FILTERS, "filters")), v.minLength(1), v.maxLength(4)),
  kernelSize: v.optional(boundedInt(MAX_KERNEL_SIZE, "pixels a side"), 3),
  /** Width of the dense layer before the softmax. */
  dense: v.optional(boundedInt(MAX_DENSE_UNITS, "units"), 64),
});

export const ModelSchema = v.variant("kind", [MlpModelSchema, CnnModelSchema]);

export const SgdSchema = v.strictObject({
  kind: v.literal("sgd"),
  learningRate: Rate,
  momentum: v.optional(v.pipe(v.number(), v.minValue(0), v.ltValue(1)), 0),
  /** Nesterov momentum (tf.train.momentum's useNesterov): w -= lr * (g + momentum * accum). */
  nesterov: v.optional(v.boolean(), false),
});

export const AdamSchema = v.strictObject({
  kind: v.literal("adam"),
  learningRate: Rate,
  beta1: v.optional(v.pipe(v.number(), v.minValue(0), v.ltValue(1)), 0.9),
  beta2: v.optional(v.pipe(v.number(), v.minValue(0), v.ltValue(1)), 0.999),
  epsilon: v.optional(v.pipe(v.number(), v.gtValue(0)), 1e-7),
});

export const OptimizerSchema = v.variant("kind", [SgdSchema, AdamSchema]);

/** DiLoCo's outer optimizer (Douillard et al. 2023; OpenDiLoCo, INTELLECT-1): SGD, Nesterov 0.9, lr 0.7. */
export const DEFAULT_OUTER_OPTIMIZER = { kind: "sgd", learningRate: 0.7, momentum: 0.9, nesterov: true } as const;
/** More inner steps than this between averages stop being "local SGD" and become separate trainings. */
export const MAX_INNER_STEPS = 1_000;
/** Samples leased in one round (batchSize x inner steps): a lease travels as JSON in the round message. */
export const MAX_ROUND_SAMPLES = 1 << 20;

/**
 * How a round turns leases into new weights.
 * - "sync": each member computes one gradient on its lease; the all-reduced mean gradient goes
 *   through the job's optimizer (every step is averaged: full communication every step).
 * - "diloco": local SGD (DiLoCo). Each member runs `innerSteps` steps of the job's optimizer (the
 *   inner optimizer, state fresh each round) on its lease cut into that many mini-batches, and
 *   contributes the pseudo-gradient (weights at round start - weights after the inner steps). The
 *   all-reduced mean pseudo-gradient goes through `outer`, in deterministic JS like "sync"'s
 *   optimizer, so every member still holds bit-identical weights after each commit. One round costs
 *   `innerSteps` times the compute of a sync round for one all-reduce.
 */
export const AlgorithmSchema = v.variant("kind", [
  v.strictObject({ kind: v.literal("sync") }),
  v.strictObject({
    kind: v.literal("diloco"),
    innerSteps: boundedInt(MAX_INNER_STEPS, "inner steps"),
    outer: v.optional(OptimizerSchema, DEFAULT_OUTER_OPTIMIZER),
  }),
]);

/**
 * How contributions travel in a ring all-reduce (packages/allreduce codecs):
 * - "dense": float32, exact sums (default);
 * - "fp16": IEEE half precision, half the bytes;
 * - "int8": 8-bit integers with one float32 scale per chunk, about a quarter of the bytes;
 * - "topk": each member sends only its `topkFraction` largest-magnitude values (index, value) and
 *   keeps what it did not send as a residual added to its next contribution (error feedback).
 * Codecs other than "dense" need `aggregation: "mean"` (a robust owner needs exact contributions).
 */
export const CodecSchema = v.picklist(["dense", "fp16", "int8", "topk"]);

/**
 * The shape of a mean's all-reduce (packages/coordination plans.ts):
 * - "auto": a flat ring below 16 members, a 2D torus from 16 when the members fill a grid (from 64
 *   with members attached to it too), and groups from 64 when they cost fewer steps than the torus;
 * - "ring": always the flat ring (2(N−1) steps);
 * - "torus": a torus whenever 4 or more members can form one (2(X−1) + 2(Y−1) steps);
 * - "groups": a d-dimensional grid of small groups whenever 4 or more members can form one
 *   (Σ 2(g_k − 1) steps: 30 at 1,000 = 2³·5³ against the torus's 126).
 * Robust aggregation runs its direct plan and topk its ring whatever this says; "torus" or "groups"
 * with either is refused.
 */
export const TopologySchema = v.picklist(["auto", "ring", "torus", "groups"]);
export type Topology = v.InferOutput<typeof TopologySchema>;
export const DEFAULT_TOPK_FRACTION = 0.002;

export const JobSchema = v.pipe(
  v.strictObject({
    name: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, "lower-case letters, digits, '.', '_' or '-', at most 64")),
    /** Name of a dataset directory with a manifest.json (see packages/training DATASETS.md). */
    dataset: v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9._-]{0,63}$/)),
    model: ModelSchema,
    optimizer: OptimizerSchema,
    /** Samples per round across all workers (the global batch). */
    batchSize: boundedInt(MAX_BATCH_SIZE, "samples"),
    /** Stop after this many epochs or rounds, whichever comes first; at least one must be given. */
    epochs: v.optional(PositiveInt),
    rounds: v.optional(PositiveInt),
    /** Evaluate the committed model on the test set every this many rounds. */
    evalEveryRounds: v.optional(PositiveInt, 10),
    /** Test accuracy the operator hopes for; reported, never used to stop early. */
    targetAccuracy: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
    /** Seed of weight initialisation and of the epoch's sample order. */
    seed: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff)), 1),
    /**
     * How the members' gradients are combined. "mean": the sample-weighted mean over a pipelined
     * ring (fastest; one dishonest member can move it anywhere). "centered-clip" / "trimmed-mean"
     * (see plan.ts):
     * a direct reduce-scatter where each shard's owner sees every member's contribution and
     * combines them robustly (BTARD), tolerating up to (N-1)/2 dishonest members, for the same bytes.
     */
    aggregation: v.optional(AggregationSchema, "mean"),
    /**
     * Spot checks by replication: after each commit, every member of the round is audited with this
     * probability (the server recomputes its lease on its CPU backend and compares it with the
     * contribution the member committed to before the all-reduce). 0 turns audits off.
     */
    spotCheck: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1)), DEFAULT_SPOT_CHECK),
    /** Training algorithm: "sync" (a gradient average every step) or "diloco" (local SGD). */
    algorithm: v.optional(AlgorithmSchema, { kind: "sync" }),
    /** Wire format of the all-reduce (see CodecSchema). */
    codec: v.optional(CodecSchema, "dense"),
    /** Share of the vector a "topk" member sends each round. */
    topkFraction: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(0.5)), DEFAULT_TOPK_FRACTION),
    /** The all-reduce's shape for a mean (see TopologySchema). */
    topology: v.optional(TopologySchema, "auto"),
    /** Pipeline (model) parallelism: stages, micro-batches, schedule, a tab's memory (pipeline.ts). */
    parallelism: v.optional(ParallelismSchema, DEFAULT_PARALLELISM),
  }),
  v.check((job) => job.epochs !== undefined || job.rounds !== undefined, "give epochs or rounds (or both)"),
  v.check((job) => job.codec === "dense" || job.aggregation === "mean", "codec other than dense needs aggregation \"mean\""),
  v.check((job) => (job.topology !== "torus" && job.topology !== "groups") || (job.aggregation === "mean" && job.codec !== "topk"), "topologies \"torus\" and \"groups\" need aggregation \"mean\" and a codec other than topk"),
  v.check(
    (job) => job.parallelism.stages === 1 || (job.algorithm.kind === "sync" && job.aggregation === "mean" && job.codec === "dense"),
    "parallelism.stages above 1 needs algorithm \"sync\", aggregation \"mean\" and codec \"dense\"",
  ),
  v.check((job) => job.batchSize >= job.parallelism.microBatches, "batchSize must be at least parallelism.microBatches (every micro-batch holds a sample)"),
  v.check((job) => roundSamples(job) <= MAX_ROUND_SAMPLES, `batchSize x inner steps must be at most ${MAX_ROUND_SAMPLES}`),
);

export type Job = v.InferOutput<typeof JobSchema>;
export type ModelSpec = v.InferOutput<typeof ModelSchema>;
export type OptimizerSpec = v.InferOutput<typeof OptimizerSchema>;
export type Algorithm = v.InferOutput<typeof AlgorithmSchema>;
export type Codec = v.InferOutput<typeof CodecSchema>;

/** Inner steps per round: 1 for "sync". */
export function innerSteps(job: { algorithm: Algorithm }): number {
  return job.algorithm.kind === "diloco" ? job.algorithm.innerSteps : 1;
}

/** Samples leased out in one round: the global batch of each inner step, times the steps. */
export function roundSamples(job: { algorithm: Algorithm; batchSize: number }): number {
  return job.batchSize * innerSteps(job);
}

/**
 * The optimizer whose state is part of the committed model state (and its hash): the one applied to
 * the all-reduced vector. "sync": the job's optimizer; "diloco": the outer one (the job's optimizer
 * is then the inner one, whose state stays in the tab).
 */
export function committedOptimizer(job: { algorithm: Algorithm; optimizer: OptimizerSpec }): OptimizerSpec {
  return job.algorithm.kind === "diloco" ? job.algorithm.outer : job.optimizer;
}

export class JobError extends Error {
  override name = "JobError";
  constructor(readonly problems: string[]) {
    super(`invalid job:\n  ${problems.join("\n  ")}`);
  }
}

/** Parses an untrusted job (already JSON-decoded). Throws JobError listing every problem with its path. */
export function parseJob(input: unknown): Job {
  const result = v.safeParse(JobSchema, input);
  if (result.success) return result.output;
  throw new JobError(
    result.issues.map((issue) => {
      const path = v.getDotPath(issue);
      return path === null ? issue.message : `${path}: ${issue.message}`;
    }),
  );
}
