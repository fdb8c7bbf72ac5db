import * as v from "valibot";

/**
 * Bodies of the operator's requests (dashboard -> server, POST /api/admin/...), as JSON. Parsed at
 * the server with `parseAdminBody`, which returns the problem as a value (a bad body is expected
 * input, answered 400), never throws.
 */

/** Largest target the operator may set: far beyond any job, small enough to stay an exact integer. */
export const MAX_TARGET_ROUNDS = 10_000_000;

/** POST /api/admin/target: the new target number of rounds; null removes the round limit (jobs with an epoch limit only). */
export const AdminTargetBodySchema = v.strictObject({
  rounds: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_TARGET_ROUNDS))),
});
export type AdminTargetBody = v.InferOutput<typeof AdminTargetBodySchema>;

/** POST /api/admin/stop: an optional reason for the event log (no body is fine). */
export const AdminStopBodySchema = v.optional(v.strictObject({ reason: v.optional(v.pipe(v.string(), v.maxLength(200))) }), {});
export type AdminStopBody = v.InferOutput<typeof AdminStopBodySchema>;

/** What every successful admin request answers. */
export const AdminAnswerSchema = v.object({
  ok: v.literal(true),
  status: v.picklist(["waiting", "running", "paused", "done"]),
  round: v.number(),
  targetRounds: v.nullable(v.number()),
});
export type AdminAnswer = v.InferOutput<typeof AdminAnswerSchema>;

export type ParsedBody<T> = { ok: true; value: T } | { ok: false; problem: string };

export function parseAdminBody<S extends v.GenericSchema>(schema: S, input: unknown): ParsedBody<v.InferOutput<S>> {
  const result = v.safeParse(schema, input);
  if (result.success) return { ok: true, value: result.output };
  const problems = result.issues.map((issue) => {
    const path = v.getDotPath(issue);
    return path === null ? issue.message : `${path}: ${issue.message}`;
  });
  return { ok: false, problem: problems.join("; ") };
}
