import * as v from "valibot";
import { JobSchema } from "./job.ts";
import { MessageError } from "./messages.ts";
import { PeerStateSchema, TrainingStatusSchema } from "./status.ts";

/**
 * `GET /api/summary[?peer=ID]`: what a volunteer's page shows about the job, in a payload that does
 * not grow with the swarm (every volunteer polls it; the dashboard's /api/status lists every peer).
 * Histories are the latest points only. With `peer`, that member's own row as the server sees it.
 */
const Count = v.pipe(v.number(), v.integer(), v.minValue(0));
/** JSON writes a NaN loss or accuracy as null. */
const Real = v.pipe(
  v.nullable(v.number()),
  v.transform((x): number => x ?? Number.NaN),
);

/** Points of loss and accuracy a summary carries at most. */
export const SUMMARY_LOSS_POINTS = 120;
export const SUMMARY_ACCURACY_POINTS = 30;

export const SummarySchema = v.object({
  job: JobSchema,
  status: TrainingStatusSchema,
  round: Count,
  targetRounds: v.optional(Count),
  epoch: Count,
  epochProgress: v.object({ used: Count, total: Count }),
  samplesSeen: Count,
  members: Count,
  loss: v.pipe(v.array(v.tuple([Count, Real])), v.maxLength(SUMMARY_LOSS_POINTS)),
  accuracy: v.pipe(v.array(v.tuple([Count, Real])), v.maxLength(SUMMARY_ACCURACY_POINTS)),
  you: v.optional(v.object({ state: PeerStateSchema, share: v.number(), samplesPerSecond: v.optional(v.number()) })),
});
export type Summary = v.InferOutput<typeof SummarySchema>;

export function parseSummary(input: unknown): Summary {
  const result = v.safeParse(SummarySchema, input);
  if (!result.success) throw new MessageError(`bad summary: ${v.summarize(result.issues)}`);
  return result.output;
}

/**
 * How far the whole job is, 0..1: by rounds when it has a target, else by epochs (finished ones,
 * counted from 0, plus the current one's used share), else undefined (an open-ended job has no end to measure).
 */
export function jobProgress(summary: Pick<Summary, "status" | "round" | "targetRounds" | "epoch" | "epochProgress"> & { job: { epochs?: number | undefined } }): number | undefined {
  if (summary.status === "done") return 1;
  const byRounds = summary.targetRounds === undefined || summary.targetRounds === 0 ? undefined : summary.round / summary.targetRounds;
  const epochs = summary.job.epochs;
  const { used, total } = summary.epochProgress;
  const byEpochs = epochs === undefined ? undefined : (summary.epoch + (total === 0 ? 0 : used / total)) / epochs;
  // Whichever limit comes first ends the job.
  const known = [byRounds, byEpochs].filter((p): p is number => p !== undefined);
  return known.length === 0 ? undefined : Math.min(1, Math.max(0, Math.max(...known)));
}
