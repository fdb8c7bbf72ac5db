import type { RoundReport } from "./types.ts";

/**
 * How the members' reported hashes decide a round. Everyone agreeing commits. With three or more
 * members, a strict majority commits too and the dissenters are the ones at fault (their update
 * differs from what the majority computed from the same reduced gradient). Anything else — two
 * members disagreeing, a tie — cannot tell who is wrong: the round is aborted without blame.
 */
export type Tally = { kind: "agreed"; hash: string; dissenters: string[] } | { kind: "split"; detail: string };

export function tally(reports: ReadonlyMap<string, RoundReport>): Tally {
  const byHash = new Map<string, string[]>();
  for (const [peer, report] of reports) {
    const peers = byHash.get(report.hash);
    if (peers === undefined) byHash.set(report.hash, [peer]);
    else peers.push(peer); // not a copy per report: at 1,000 members that was half a million copied ids a round
  }
  let best: [string, string[]] | undefined;
  for (const entry of byHash) if (best === undefined || entry[1].length > best[1].length) best = entry;
  if (best === undefined) return { kind: "split", detail: "no reports" };
  const [hash, agreeing] = best;
  if (agreeing.length === reports.size) return { kind: "agreed", hash, dissenters: [] };
  if (reports.size >= 3 && agreeing.length * 2 > reports.size) {
    const agreed = new Set(agreeing);
    return { kind: "agreed", hash, dissenters: [...reports.keys()].filter((p) => !agreed.has(p)) };
  }
  const detail = [...byHash].map(([h, peers]) => `${peers.join("+")}=${h.slice(0, 12)}`).join(", ");
  return { kind: "split", detail };
}

/**
 * Ring order for the next plan: join order, except that a suspect whose only accuser is its right
 * neighbour (the one that receives from it, and so the one that times out on it) is moved, so the
 * next attempt gives it a different receiver: a real fault is then witnessed by a second member,
 * and a false accusation is not repeated by the same position.
 */
export function separateAccused(order: readonly string[], accuserOf: (suspect: string) => string | undefined): string[] {
  const ring = [...order];
  if (ring.length < 3) return ring;
  for (let k = 0; k < ring.length; k++) {
    const suspect = ring[k] as string;
    const accuser = accuserOf(suspect);
    if (accuser === undefined || ring[(k + 1) % ring.length] !== accuser) continue;
    // Swap the suspect with the member before it: its right neighbour becomes someone else.
    const before = (k - 1 + ring.length) % ring.length;
    ring[k] = ring[before] as string;
    ring[before] = suspect;
  }
  return ring;
}

/**
 * Consecutive disputed rounds back off, so two members that keep disagreeing do not spin the
 * server: the first is redone at once (a one-off glitch), then 250 ms, 500 ms, ... up to 10 s.
 */
export function disputeBackoffMs(disputes: number): number {
  return disputes <= 1 ? 0 : Math.min(250 * 2 ** (disputes - 2), 10_000);
}

/** Fewest members of a direct plan whose outlier reports strike anyone. */
export const MIN_OUTLIER_PLAN = 4;

/**
 * Members that a strict majority of a direct plan's shard owners clipped as outliers, with how many
 * owners did. One owner's word is not enough (it may lie, or one shard may be unusual); a member
 * whose whole vector is far from the others is clipped by most owners. Owners are the reporters.
 */
export function outliers(reports: ReadonlyMap<string, RoundReport>): Map<string, number> {
  // With three contributions one of them lying far from the other two's median is routine (a CI
  // run struck an honest tab that way at round 59 of 60); the aggregate is bounded by the
  // clipping anyway, so strikes wait for a plan of MIN_OUTLIER_PLAN.
  if (reports.size < MIN_OUTLIER_PLAN) return new Map();
  const counts = new Map<string, number>();
  for (const [owner, report] of reports) {
    for (const peer of new Set(report.clipped ?? [])) if (peer !== owner) counts.set(peer, (counts.get(peer) ?? 0) + 1);
  }
  const majority = new Map<string, number>();
  for (const [peer, count] of counts) if (count * 2 > reports.size) majority.set(peer, count);
  return majority;
}
