import express, { type NextFunction, type Request, type Response } from "express";
import type { CoordinatorEvent, CoordinatorStatus } from "@crowdtrain/coordination";
import { AdminStopBodySchema, AdminTargetBodySchema, parseAdminBody, type AdminAnswer } from "@crowdtrain/protocol";
import { bearerToken, tokenMatches } from "./token.ts";

/** Admin request bodies are a few bytes. */
const MAX_BODY_BYTES = 4 * 1024;

export const MISSING_TOKEN_MESSAGE =
  "admin token required: send 'Authorization: Bearer <token>' with the admin token the server printed at start";
export const WRONG_TOKEN_MESSAGE = "wrong admin token";

export type OperatorEvent = Extract<CoordinatorEvent, { type: "pause" | "resume" | "stop" | "set-max-rounds" }>;

/** What the admin routes may see and do; the training service provides it (tests give a fake). */
export type Operator = {
  state(): { status: CoordinatorStatus; maxRounds: number | undefined; committedRound: number };
  /** Feeds an operator event to the coordinator and carries out its effects. */
  dispatch(event: OperatorEvent): void;
  /** Whether the job stops after some epochs: without it, a job needs a round target. */
  hasEpochLimit: boolean;
  now?: () => number;
};

type Answer = { status: number; body: AdminAnswer | { error: string } };

/**
 * Operator controls under /api/admin, each behind `Authorization: Bearer <token>` (401 with the
 * reason otherwise): POST pause, resume, stop {reason?}, target {rounds}; GET check (is my token
 * right?). Bodies are JSON parsed with the protocol's schemas; 400 names the problem, 409 says why
 * an action cannot apply now (training finished).
 */
export function createAdminRouter(token: string, operator: Operator): express.Router {
  const now = operator.now ?? Date.now;
  const router = express.Router();
  router.use("/api/admin", requireToken(token));
  router.use("/api/admin", express.json({ limit: MAX_BODY_BYTES, strict: true }));

  const answer = (res: Response, { status, body }: Answer) => res.status(status).json(body);
  const ok = (): Answer => {
    const s = operator.state();
    return { status: 200, body: { ok: true, status: s.status, round: s.committedRound, targetRounds: s.maxRounds ?? null } };
  };
  const finished = (action: string): Answer => ({ status: 409, body: { error: `training has finished; cannot ${action}` } });

  router.get("/api/admin/check", (_req, res) => answer(res, ok()));
  router.post("/api/admin/pause", (_req, res) => {
    if (operator.state().status === "done") return answer(res, finished("pause"));
    operator.dispatch({ type: "pause", now: now() });
    return answer(res, ok());
  });
  router.post("/api/admin/resume", (_req, res) => {
    if (operator.state().status === "done") return answer(res, finished("resume"));
    operator.dispatch({ type: "resume", now: now() });
    return answer(res, ok());
  });
  router.post("/api/admin/stop", (req, res) => {
    const body = parseAdminBody(AdminStopBodySchema, req.body);
    if (!body.ok) return answer(res, badBody(body.problem, '{"reason": "..."} or no body'));
    // Stopping a finished job changes nothing; the answer says it is done.
    operator.dispatch({ type: "stop", reason: body.value.reason ?? "stopped by the operator", now: now() });
    return answer(res, ok());
  });
  router.post("/api/admin/target", (req, res) => {
    const body = parseAdminBody(AdminTargetBodySchema, req.body);
    if (!body.ok) return answer(res, badBody(body.problem, '{"rounds": N} with a positive integer N, or null for no round limit'));
    if (operator.state().status === "done") return answer(res, finished("change the target"));
    const rounds = body.value.rounds ?? undefined;
    if (rounds === undefined && !operator.hasEpochLimit) {
      return answer(res, { status: 400, body: { error: "this job has no epoch limit: it needs a target number of rounds" } });
    }
    operator.dispatch({ type: "set-max-rounds", rounds, now: now() });
    return answer(res, ok());
  });
  router.use("/api/admin", (req, res) => answer(res, { status: 404, body: { error: `no admin action ${req.method} ${req.baseUrl}${req.path}` } }));
  // Body parser failures (malformed JSON, too large) as JSON with the reason, not an HTML page.
  router.use("/api/admin", (error: unknown, _req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) return next(error);
    const status = httpStatusOf(error);
    const message = status === 413 ? `body larger than ${MAX_BODY_BYTES} bytes` : `bad request: ${error instanceof Error ? error.message : String(error)}`;
    return answer(res, { status, body: { error: message } });
  });
  return router;
}

function requireToken(expected: string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const given = bearerToken(req.get("authorization"));
    if (given === undefined || !tokenMatches(expected, given)) {
      res
        .status(401)
        .set("www-authenticate", 'Bearer realm="crowdtrain-admin"')
        .json({ error: given === undefined ? MISSING_TOKEN_MESSAGE : WRONG_TOKEN_MESSAGE });
      return;
    }
    next();
  };
}

function badBody(problem: string, expected: string): Answer {
  return { status: 400, body: { error: `bad body: ${problem}; expected ${expected}` } };
}

/** The HTTP status an Express body parser put on its error (400 malformed, 413 too large), else 500. */
function httpStatusOf(error: unknown): number {
  if (typeof error === "object" && error !== null && "status" in error && typeof error.status === "number") return error.status;
  return 500;
}
