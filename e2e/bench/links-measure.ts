// Figures of one bench:links run, from the server's status and the worker pages' own status. Pure
// functions of what was read, so the bench file only drives the browser and the clock.
import type { WorkerPageStatus } from "../../apps/worker/src/worker-api.ts";
import type { Status } from "../support/status.ts";
import { median } from "./report.ts";

/** What the bench reads from each worker page at the end of a run. */
export type TabSnapshot = Pick<WorkerPageStatus, "peerId" | "phase" | "backend" | "stopReason" | "lastError" | "committed" | "rounds">;

/**
 * Earliest round opening seen: the open round's `openedAt`, or a committed round's commit time minus
 * its duration. Polled every few seconds; recentRounds (the last 50) still holds round 1 by then.
 */
export function firstOpenedAt(status: Status, earliest: number | undefined): number | undefined {
  const seen = [earliest, status.openRound?.openedAt, ...status.recentRounds.map((r) => r.at - r.roundMs)].filter((t): t is number => t !== undefined);
  return seen.length === 0 ? undefined : Math.min(...seen);
}

/**
 * The first evaluation at or above `target`: its round and when the status showed it (its "eval"
 * event's time, "round N: test accuracy …"; the status's own time if the event has scrolled out).
 */
export function reachedTarget(status: Status, target: number): { round: number; at: number } | undefined {
  const point = status.accuracy.find((p) => p.accuracy >= target);
  if (point === undefined) return undefined;
  const event = status.events.find((e) => e.kind === "eval" && e.text.startsWith(`round ${point.round}:`));
  return { round: point.round, at: event?.at ?? status.now };
}

/** Training members still in the job (not departed, not another role). */
export const trainers = (status: Status): Status["peers"] => status.peers.filter((p) => p.state !== "gone" && (p.role ?? "trainer") === "trainer");

/** Members' all-reduce bytes sent (their cumulative counters), mean over tabs, per committed round. */
export function bytesSentPerTabPerRound(status: Status): number {
  const members = trainers(status);
  if (members.length === 0 || status.round === 0) return Number.NaN;
  return members.reduce((sum, p) => sum + p.bytesSent, 0) / members.length / status.round;
}

/** Mean bytes a member sent to its right neighbour in the last committed round (cross-check of the counters). */
export function lastRoundLinkBytes(status: Status): number | null {
  const links = status.lastRing?.links ?? [];
  return links.length === 0 ? null : links.reduce((sum, l) => sum + l.bytes, 0) / links.length;
}

/**
 * Share of wall time each tab spent computing (its rounds' computeMs + readbackMs, as the page
 * reports them), mean over tabs. The window is the server's recent rounds (the last ≤ 50 committed):
 * from the first one's opening to the last one's commit, idle gaps between rounds included.
 */
export function computeUtilisation(status: Status, tabs: readonly TabSnapshot[]): { utilisation: number; rounds: number } {
  const window = status.recentRounds;
  const first = window[0];
  const last = window.at(-1);
  if (first === undefined || last === undefined || tabs.length === 0) return { utilisation: Number.NaN, rounds: 0 };
  const wallMs = last.at - (first.at - first.roundMs);
  const inWindow = new Set(window.map((r) => r.round));
  const shares = tabs.map((tab) => tab.rounds.filter((r) => inWindow.has(r.round)).reduce((sum, r) => sum + r.computeMs + r.readbackMs, 0) / wallMs);
  return { utilisation: shares.reduce((a, b) => a + b, 0) / shares.length, rounds: window.length };
}

/** Medians of the server's recent rounds (each the slowest member's figure). */
export function roundMedians(status: Status): { roundMs: number; computeMs: number; allReduceMs: number } {
  const pick = (key: "roundMs" | "computeMs" | "allReduceMs"): number => (status.recentRounds.length === 0 ? Number.NaN : median(status.recentRounds.map((r) => r[key])));
  return { roundMs: pick("roundMs"), computeMs: pick("computeMs"), allReduceMs: pick("allReduceMs") };
}

/**
 * Real errors of a run (the bench fails on them): a tab that stopped or left, and any committed
 * round whose weights hash differs between tabs or from the server's record.
 */
export function runProblems(status: Status, tabs: readonly TabSnapshot[], tabCount: number): string[] {
  const problems: string[] = [];
  tabs.forEach((tab, k) => {
    if (tab.phase === "stopped") problems.push(`tab ${k} (${tab.peerId ?? "no id"}) stopped: ${tab.stopReason ?? tab.lastError ?? "no reason given"}`);
  });
  const gone = status.peers.filter((p) => p.state === "gone");
  for (const p of gone) problems.push(`${p.id} left the job: ${p.leftBecause ?? "no reason given"}`);
  if (trainers(status).length !== tabCount) problems.push(`${trainers(status).length} training members at the end, expected ${tabCount}`);
  const hashes = new Map<number, Set<string>>();
  for (const r of status.recentRounds) hashes.set(r.round, new Set([r.hash]));
  for (const tab of tabs) for (const [round, hash] of tab.committed) hashes.set(round, (hashes.get(round) ?? new Set()).add(hash));
  for (const [round, seen] of hashes) if (seen.size > 1) problems.push(`round ${round}: weights hashes disagree (${[...seen].join(" ")})`);
  return problems;
}

/** Routine event kinds; every other kind (strike, aborted, rollback, evicted, error, ...) may explain a failed or slow run. */
const ROUTINE_EVENTS = new Set(["eval", "joined", "epoch", "checkpoint", "upload"]);

/** The server's recent unusual events (strikes, aborts, rollbacks, errors) as "kind: text", oldest first. */
export function notableEvents(status: Status, limit: number): string[] {
  return status.events.filter((e) => !ROUTINE_EVENTS.has(e.kind)).slice(-limit).map((e) => `${e.kind}: ${e.text}`);
}
