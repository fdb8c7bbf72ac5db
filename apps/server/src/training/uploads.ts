import type { CommittedRound, Coordinator, CoordinatorEvent, UploadSlot } from "@crowdtrain/coordination";
import { joinStageStates, StageStateError } from "@crowdtrain/pipeline";
import { decodeState, stateProblem, type ModelState, type StateHasher } from "@crowdtrain/training";
import type express from "express";
import { bearerToken } from "../admin/token.ts";
import { createConcurrencyLimit, readBody } from "../http/body.ts";
import { asyncRoute, HttpError } from "../http/errors.ts";
import type { IdentityRegistry } from "../identity/registry.ts";
import type { ModelStore } from "./model-store.ts";

/** The header naming the worker an upload acts for; its session token comes as the bearer token. */
export const PEER_HEADER = "x-crowdtrain-peer";
/** State uploads in flight at once; each holds up to one state in memory. */
export const MAX_CONCURRENT_UPLOADS = 2;
/** A 503 for a full upload slot tells the worker to come back this soon. */
const RETRY_AFTER_S = 1;

/**
 * Why a state upload was refused, by its answer's status: a fixed set, so /metrics can count
 * refusals by it (the message, which names peers and rounds, stays out of the labels).
 */
const UPLOAD_REJECTION_BY_STATUS = {
  400: "bad-request",
  401: "unauthorized",
  403: "not-asked",
  408: "stalled",
  413: "too-large",
  415: "bad-type",
  422: "bad-state",
  503: "busy",
} as const;
export type UploadRejection = (typeof UPLOAD_REJECTION_BY_STATUS)[keyof typeof UPLOAD_REJECTION_BY_STATUS] | "other";
export const UPLOAD_REJECTIONS: readonly UploadRejection[] = [...Object.values(UPLOAD_REJECTION_BY_STATUS), "other"];

function uploadRejection(status: number): UploadRejection {
  return status in UPLOAD_REJECTION_BY_STATUS ? UPLOAD_REJECTION_BY_STATUS[status as keyof typeof UPLOAD_REJECTION_BY_STATUS] : "other";
}

export type UploadDeps = {
  coordinator: Coordinator;
  identities: IdentityRegistry;
  store: ModelStore;
  /** The job's state hasher (a pipeline job's hashes by layers). */
  hashOf: StateHasher;
  /** A pipeline stage's part of the state, the layers [from, to): its weight count and hasher. */
  stagePart: (from: number, to: number) => { weights: number; hashOf: StateHasher };
  dispatch: (event: CoordinatorEvent) => void;
  /** A committed state was adopted: checkpoint, evaluate, tell the dashboards. */
  onAdopted: (state: ModelState) => void;
  onRejected: (text: string) => void;
  /** Every refused upload (any HttpError answer), by a fixed reason; onRejected logs only failed checks. */
  onRefused?: (reason: UploadRejection) => void;
};

/**
 * `PUT /api/state/<round>`: only the member the coordinator designated may upload, and only the
 * round it was asked for (its pending state while the round is open, so a plan of one is checked
 * before it commits; or a committed state the server lacks). The body is bounded by the job's exact
 * state size, never decompressed, and checked: it decodes, every number is finite, its contents
 * hash to its header's SHA-256, and (for a committed round) that hash is the committed one.
 *
 * A pipeline round's uploaders (one per stage) send their stage's part of the pending state, checked
 * with the stage's layers' hasher; the coordinator commits the round only once every stage's part
 * passed, and the server then joins them into the whole state (joinStageStates), whose layered hash
 * is the committed one, and adopts it: what it serves and checkpoints never depends on who trained.
 */
export function createUploadHandler(deps: UploadDeps): { route: express.RequestHandler; onCommitted(commit: Pick<CommittedRound, "round" | "attempt" | "hash" | "pipeline">): void } {
  const uploads = createConcurrencyLimit(MAX_CONCURRENT_UPLOADS);
  /** The designated uploader's checked pending state, adopted if its round commits with its hash. */
  let pending: { state: ModelState; attempt: number } | undefined;
  /** The checked stage parts of the latest pipeline attempt, by stage. */
  let parts: { attempt: number; byStage: Map<number, ModelState> } | undefined;

  const adopt = (state: ModelState): void => {
    if (!deps.store.adopt(state)) return;
    deps.dispatch({ type: "state-stored", round: state.round, now: Date.now() });
    deps.onAdopted(state);
  };

  const handle = async (req: express.Request, res: express.Response): Promise<void> => {
    const { round, peerId } = authorizeUpload(req, deps.identities, "state");
    const slot = deps.coordinator.uploadSlots(peerId).find((s) => s.round === round);
    if (slot === undefined) throw new HttpError(403, `${peerId} is not asked to upload the state of round ${round}`);
    const release = uploads.tryAcquire();
    if (release === undefined) {
      throw new HttpError(503, `${MAX_CONCURRENT_UPLOADS} state uploads are already in flight; retry in ${RETRY_AFTER_S} s`, { "retry-after": String(RETRY_AFTER_S) });
    }
    let body: Buffer;
    try {
      body = await readBody(req, { limit: deps.store.maxStateBytes, type: "application/octet-stream" });
    } finally {
      release();
    }
    // The body took time: an upload whose attempt was aborted meanwhile (a stale export) is refused
    // without a check, so it can neither fail nor fill the slot of the attempt that replaced it.
    const still = deps.coordinator.uploadSlots(peerId).find((s) => s.round === round);
    if (still === undefined || !sameSlot(slot, still)) throw new HttpError(409, `the slot ${peerId} was uploading round ${round} for is no longer open (its attempt ended)`);
    const attempt = slot.kind === "pending" ? slot.attempt : undefined;
    const stage = slot.kind === "pending" ? slot.stage : undefined;
    const part = stage === undefined ? undefined : deps.stagePart(stage.from, stage.to);
    const checked = check(body, round, part?.weights ?? deps.store.weightCount, part?.hashOf ?? deps.hashOf);
    const problem = "problem" in checked ? checked.problem : (slotProblem(slot, checked.state) ?? (stage === undefined ? undefined : partProblem(checked.state, round, parts !== undefined && parts.attempt === attempt ? parts.byStage : undefined)));
    deps.dispatch({
      type: "state-checked",
      peerId,
      round,
      attempt,
      hash: "state" in checked ? checked.state.hash : "",
      problem,
      now: Date.now(),
    });
    if (problem !== undefined || !("state" in checked)) {
      deps.onRejected(`state upload by ${peerId} for round ${round}: ${problem}`);
      throw new HttpError(422, problem ?? "rejected");
    }
    if (slot.kind === "pending" && stage !== undefined) {
      if (parts !== undefined && parts.attempt > slot.attempt) throw new HttpError(409, `attempt ${slot.attempt} was replaced by ${parts.attempt}`);
      if (parts?.attempt !== slot.attempt) parts = { attempt: slot.attempt, byStage: new Map() };
      parts.byStage.set(stage.index, checked.state);
    } else if (slot.kind === "pending") {
      // Checked now; adopted when (if) the round commits with this hash, which may have happened already.
      const committed = deps.coordinator.committed;
      if (committed.round === round && committed.hash === checked.state.hash) adopt(checked.state);
      else pending = { state: checked.state, attempt: slot.attempt };
    } else {
      adopt(checked.state);
    }
    res.status(204).end();
  };

  /** Counts each refusal, then lets it reach the error handler unchanged. */
  const counted = async (req: express.Request, res: express.Response): Promise<void> => {
    try {
      await handle(req, res);
    } catch (error) {
      if (error instanceof HttpError) deps.onRefused?.(uploadRejection(error.status));
      throw error;
    }
  };

  /** A committed pipeline round: its stages' checked parts, joined, are the whole committed state. */
  const adoptJoined = (round: number, attempt: number, hash: string, stages: number): void => {
    const held = parts;
    if (held?.attempt !== attempt) return;
    parts = undefined;
    const byStage = Array.from({ length: stages }, (_, k) => held.byStage.get(k));
    if (byStage.some((part) => part === undefined)) {
      fail(`round ${round} committed without every stage's state (${held.byStage.size} of ${stages}): the server cannot assemble it`);
      return;
    }
    let joined: ModelState;
    try {
      const whole = joinStageStates(byStage as ModelState[]);
      joined = { round, hash, weights: whole.weights, optimizer: whole.optimizer };
    } catch (error) {
      if (!(error instanceof StageStateError)) throw error;
      fail(`the stages' states of round ${round} do not join: ${error.message}`);
      return;
    }
    // The stages' hashes were checked one by one; the join must give the committed hash too.
    const problem = stateProblem(joined, deps.hashOf);
    if (problem !== undefined) {
      fail(`the joined state of round ${round} is not the committed one: ${problem}`);
      return;
    }
    adopt(joined);
  };
  /**
   * A committed round the server cannot assemble has no state to serve, checkpoint or sync anyone
   * to (its stages' members hold only their parts): the job stops, saying why, rather than train on
   * without one. The checks at upload (each part's hash, its optimizer step against the others')
   * leave only a bug here.
   */
  const fail = (reason: string): void => {
    deps.onRejected(reason);
    deps.dispatch({ type: "stop", reason, now: Date.now() });
  };

  return {
    route: asyncRoute(counted),
    onCommitted({ round, attempt, hash, pipeline }) {
      if (pipeline !== undefined) {
        adoptJoined(round, attempt, hash, pipeline.plan.stages.length);
        return;
      }
      const held = pending;
      if (held === undefined || held.state.round > round) return;
      pending = undefined;
      if (held.state.round === round && held.state.hash === hash) adopt(held.state);
    },
  };
}

/**
 * `PUT /api/<resource>/<round>` acts for one worker: the round must be decimal digits, and the
 * request must carry that worker's id (PEER_HEADER) and session token (bearer). Throws HttpError.
 */
export function authorizeUpload(req: express.Request, identities: IdentityRegistry, resource: "state" | "contribution"): { round: number; peerId: string } {
  if (!/^\d{1,10}$/.test(req.params.round ?? "")) throw new HttpError(400, `PUT /api/${resource}/<round>: round must be a decimal integer`);
  const peerId = req.get(PEER_HEADER) ?? "";
  if (!identities.checkSession(peerId, bearerToken(req.get("authorization")) ?? "")) {
    throw new HttpError(401, `a ${resource} upload needs the ${PEER_HEADER} header and that worker's session token as the bearer token`);
  }
  return { round: Number(req.params.round), peerId };
}

function check(body: Buffer, round: number, weightCount: number, hashOf: StateHasher): { state: ModelState } | { problem: string } {
  let state: ModelState;
  try {
    state = decodeState(new Uint8Array(body.buffer, body.byteOffset, body.byteLength), weightCount);
  } catch (error) {
    return { problem: error instanceof Error ? error.message : String(error) };
  }
  if (state.round !== round) return { problem: `the body is round ${state.round}, the URL says ${round}` };
  const problem = stateProblem(state, hashOf);
  return problem === undefined ? { state } : { problem };
}

/** The same slot: kind, round, and for a pending one its attempt and stage. */
function sameSlot(a: UploadSlot, b: UploadSlot): boolean {
  if (a.kind !== b.kind || a.round !== b.round) return false;
  if (a.kind === "committed" || b.kind === "committed") return true;
  return a.attempt === b.attempt && a.stage?.index === b.stage?.index;
}

/**
 * A stage's part must join the others' of its attempt: the same optimizer kind, step and scalars
 * (a part stepping differently would commit and then fail to join, leaving the round without a state).
 */
function partProblem(state: ModelState, round: number, others: ReadonlyMap<number, ModelState> | undefined): string | undefined {
  for (const [stage, other] of others ?? []) {
    const a = state.optimizer;
    const b = other.optimizer;
    if (a.kind !== b.kind || a.step !== b.step || a.scalars.length !== b.scalars.length || a.scalars.some((s, i) => s !== b.scalars[i])) {
      return `its optimizer (${a.kind}, step ${a.step}) disagrees with stage ${stage}'s (${b.kind}, step ${b.step}) in round ${round}`;
    }
  }
  return undefined;
}

function slotProblem(slot: UploadSlot, state: ModelState): string | undefined {
  if (slot.kind === "committed" && state.hash !== slot.hash) return `round ${slot.round} was committed with hash ${slot.hash}, not ${state.hash}`;
  return undefined;
}
