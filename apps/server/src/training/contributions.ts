import type { AuditSlot, Coordinator, CoordinatorEvent } from "@crowdtrain/coordination";
import { AUDIT_TOLERANCE, contributionDigest, relativeError } from "@crowdtrain/training";
import { nodeSha256 } from "@crowdtrain/training/node";
import type express from "express";
import { readBody } from "../http/body.ts";
import { asyncRoute, HttpError } from "../http/errors.ts";
import type { IdentityRegistry } from "../identity/registry.ts";
import type { Auditor } from "./auditor.ts";
import type { ModelStore } from "./model-store.ts";
import { authorizeUpload } from "./uploads.ts";

export type ContributionDeps = {
  coordinator: Coordinator;
  identities: IdentityRegistry;
  store: ModelStore;
  auditor: Auditor;
  dispatch: (event: CoordinatorEvent) => void;
  /** Relative L2 distance an honest contribution may show against the CPU recomputation. */
  tolerance?: number;
};

type Verdict = Omit<Extract<CoordinatorEvent, { type: "audit-checked" }>, "type" | "peerId" | "round" | "now">;

/**
 * `PUT /api/contribution/<round>`: an audited member uploads the contribution it committed to (its
 * gradient, float32 little-endian, exactly one per weight). Only a member with a pending audit of
 * that round may; the verdict goes to the coordinator, and the member gets 204 once it is judged
 * (a failed audit is the coordinator's to act on, not an HTTP error). Once the upload is the
 * contribution committed to, the coordinator hears of it (`audit-received`): the member may leave
 * while its lease is recomputed, and every path from there dispatches a verdict. Checks, in order:
 * the bytes hash to the digest committed before the all-reduce (else it swapped its vector), and
 * the server's own CPU recomputation of the lease from the round's starting state lies within the
 * tolerance (else it computed something else).
 */
export function createContributionHandler(deps: ContributionDeps): express.RequestHandler {
  const tolerance = deps.tolerance ?? AUDIT_TOLERANCE;
  /** One upload per audit at a time: a member cannot queue recomputations by repeating it. */
  const inFlight = new Set<string>();

  /** The upload's verdict; `received` is told once the upload is the contribution the member committed to. */
  const judge = async (peerId: string, slot: AuditSlot, body: Buffer, received: () => void): Promise<Verdict> => {
    const claimed = new Float32Array(body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
    const digest = contributionDigest(claimed, nodeSha256);
    if (digest !== slot.digest) {
      return { outcome: "failed", detail: `its upload hashes to ${digest.slice(0, 12)}, not the digest ${slot.digest.slice(0, 12)} it committed before the all-reduce` };
    }
    received();
    const base = deps.store.stateAt(slot.baseRound);
    if (base === undefined) return { outcome: "inconclusive", detail: `the server no longer holds the state of round ${slot.baseRound} to recompute from` };
    // A rollback or the job's end may drop the audit while it waits its turn: then it is not recomputed.
    const reference = await deps.auditor.recompute(base.weights, slot.lease, () => deps.coordinator.auditSlot(peerId, slot.round) !== undefined);
    const error = relativeError(claimed, reference);
    const figure = Number.isFinite(error) ? error.toExponential(2) : "infinite";
    if (error <= tolerance) return { outcome: "passed", relativeError: error, detail: `relative error ${figure} against the CPU recomputation` };
    return { outcome: "failed", relativeError: Number.isFinite(error) ? error : undefined, detail: `its gradient lies ${figure} (relative L2) from the CPU recomputation of its lease, above the tolerance ${tolerance}` };
  };

  return asyncRoute(async (req, res) => {
    const { round, peerId } = authorizeUpload(req, deps.identities, "contribution");
    const slot = deps.coordinator.auditSlot(peerId, round);
    if (slot === undefined) throw new HttpError(403, `${peerId} has no pending spot check of round ${round}`);
    const key = `${round}:${peerId}`;
    if (inFlight.has(key)) throw new HttpError(409, `the contribution of ${peerId} to round ${round} is already being judged`);
    inFlight.add(key);
    try {
      const bytes = deps.store.weightCount * 4;
      const body = await readBody(req, { limit: bytes, type: "application/octet-stream" });
      let verdict: Verdict;
      if (body.byteLength !== bytes) verdict = { outcome: "failed", detail: `it uploaded ${body.byteLength} bytes for a contribution of ${bytes}` };
      else {
        try {
          // Answered once the committed contribution is here: the member may leave; this verdict settles the audit.
          verdict = await judge(peerId, slot, body, () => deps.dispatch({ type: "audit-received", peerId, round, now: Date.now() }));
        } catch (error) {
          // Our own failure to recompute blames nobody.
          verdict = { outcome: "inconclusive", detail: `the server could not recompute the lease: ${error instanceof Error ? error.message : String(error)}` };
        }
      }
      deps.dispatch({ type: "audit-checked", peerId, round, ...verdict, now: Date.now() });
    } finally {
      inFlight.delete(key);
    }
    res.status(204).end();
  });
}
