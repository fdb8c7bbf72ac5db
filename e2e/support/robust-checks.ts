// What robust.spec and its background variant both check: a sign-flipping lab tab is caught by a
// spot check, evicted and rolled back; the honest tabs pass every audit and none is evicted.
import type { Page } from "@playwright/test";
import type {} from "../../apps/worker/src/lab-api.ts";
import { expect } from "../fixtures.ts";
import { fetchStatus, type Status } from "./status.ts";

const POLL = { intervals: [500, 1_000] };
/** Each of its rounds is audited with probability 1/2: caught within a few rounds. */
const CAUGHT_TIMEOUT_MS = 2 * 60_000;
const LAB_STOP_TIMEOUT_MS = 30_000;
const JOIN_TIMEOUT_MS = 60_000;

/** Starts the lab's sign-flipping tab on the CPU backend; resolves with its peer id once it joined. */
export async function startSignFlipper(lab: Page): Promise<string> {
  await lab.evaluate(() => window.crowdtrainLab.labDishonest({ attack: "sign-flip", backends: ["cpu"] }));
  const peerId = async (): Promise<string | undefined> => (await lab.evaluate(() => window.crowdtrainLab.labDishonestStatus()))?.peerId;
  await expect.poll(peerId, { timeout: JOIN_TIMEOUT_MS }).toMatch(/^w-/);
  return (await peerId()) as string;
}

/** Waits for `attacker` to be evicted by a failed spot check; checks why and the rollback. Returns the status then. */
export async function expectCaughtAndRolledBack(serverUrl: string, lab: Page, attacker: string): Promise<Status> {
  await expect.poll(async () => (await fetchStatus(serverUrl)).peers.find((p) => p.id === attacker)?.leftBecause ?? "", { timeout: CAUGHT_TIMEOUT_MS, ...POLL }).toMatch(/failed the spot check/);
  const atEviction = await fetchStatus(serverUrl);
  const failed = atEviction.audits?.recent.filter((a) => a.outcome === "failed") ?? [];
  expect(failed.map((a) => a.peer)).toEqual([attacker]);
  expect(failed[0]?.detail).toMatch(/from the CPU recomputation of its lease, above the tolerance/);
  // Its rounds were undone: the model went back to before its first round.
  expect(atEviction.events.filter((e) => e.kind === "rollback").map((e) => e.text).join("\n")).toMatch(/restarts from the state of round 0/);
  await expect.poll(() => lab.evaluate(() => window.crowdtrainLab.labDishonestStatus()?.phase), { timeout: LAB_STOP_TIMEOUT_MS }).toBe("stopped");
  return atEviction;
}

/**
 * The honest tabs' audits in `final`: more than 10, every one passed, none of the tabs evicted.
 * Prints the largest relative error per backend against the tolerance. Returns those audits.
 */
export function expectHonestAuditsPassed(final: Status, honestIds: readonly (string | undefined)[]): NonNullable<Status["audits"]>["recent"] {
  const honestAudits = (final.audits?.recent ?? []).filter((a) => honestIds.includes(a.peer));
  const spread = (backend: string): number => {
    const ids = final.peers.filter((p) => p.backend === backend && honestIds.includes(p.id)).map((p) => p.id);
    return Math.max(0, ...honestAudits.filter((a) => ids.includes(a.peer)).map((a) => a.relativeError ?? 0));
  };
  console.log(`robust: ${honestAudits.length} honest audits; largest relative error webgpu ${spread("webgpu").toExponential(2)}, cpu ${spread("cpu").toExponential(2)} (tolerance ${final.audits?.tolerance})`);
  expect(honestAudits.length).toBeGreaterThan(10);
  expect(honestAudits.filter((a) => a.outcome !== "passed").map((a) => a.detail)).toEqual([]);
  for (const id of honestIds) {
    const row = final.peers.find((p) => p.id === id);
    expect(row?.leftBecause ?? "", `honest ${id}`).not.toMatch(/evicted|spot check/);
  }
  return honestAudits;
}
