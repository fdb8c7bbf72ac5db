import { stageMembers, type PipelinePlan } from "@crowdtrain/protocol";
import { tally } from "./rounds.ts";
import type { RoundReport } from "./types.ts";

/**
 * The pure parts of a pipeline round (a job with parallelism.stages above 1): who keeps which
 * stage, how the batch is shared between replicas, and how the stages' reports decide the round.
 */

/** The layers [from, to) whose committed state a member holds; undefined: it holds the whole state. */
export type StageHeld = { readonly from: number; readonly to: number };

/**
 * The plan with its members moved between positions so that each keeps the stage whose committed
 * state it holds (a stage's members hold only that stage's layers after a commit): members holding
 * stage k's layers take stage k's places first, then members holding the whole state (joiners,
 * spares, anyone who synced) fill the rest. Any chosen member fits any stage (the cut fits the
 * smallest budget among them), so the moves cost nothing. `mustSync`: members placed on layers they
 * do not hold, who must fetch the committed state before the round can open.
 */
export function keepStages(plan: PipelinePlan, heldOf: (peer: string) => StageHeld | undefined): { plan: PipelinePlan; mustSync: string[] } {
  const replicas = plan.replicas.length;
  const free = new Set(plan.replicas.flat());
  const grid: (string | undefined)[][] = plan.replicas.map((row) => row.map(() => undefined));
  const place = (stage: number, peer: string): boolean => {
    const replica = grid.findIndex((row) => row[stage] === undefined);
    if (replica < 0) return false;
    (grid[replica] as (string | undefined)[])[stage] = peer;
    free.delete(peer);
    return true;
  };
  for (const [stage, range] of plan.stages.entries()) {
    for (const peer of [...free]) {
      const held = heldOf(peer);
      if (held?.from === range.from && held.to === range.to && !place(stage, peer)) break;
    }
  }
  // Whole-state holders first, so a member holding another stage is moved only when nobody else can go.
  const rest = [...free].sort((a, b) => Number(heldOf(a) !== undefined) - Number(heldOf(b) !== undefined));
  const mustSync: string[] = [];
  for (let replica = 0; replica < replicas; replica++) {
    for (let stage = 0; stage < plan.stages.length; stage++) {
      if (grid[replica]?.[stage] !== undefined) continue;
      const peer = rest.shift() as string;
      (grid[replica] as (string | undefined)[])[stage] = peer;
      if (heldOf(peer) !== undefined) mustSync.push(peer);
    }
  }
  return { plan: { ...plan, replicas: grid as string[][] }, mustSync };
}

/**
 * The round's plan for `samples` samples: as many replicas as the samples allow each a sample per
 * micro-batch (the end of an epoch may hold fewer than the plan's replicas × microBatches), and
 * each replica's lease, as equal as can be, larger first.
 */
export function shareBatch(plan: PipelinePlan, batch: readonly number[]): { plan: PipelinePlan; leases: number[][] } {
  const replicas = Math.max(1, Math.min(plan.replicas.length, Math.floor(batch.length / plan.microBatches)));
  const microBatches = Math.max(1, Math.min(plan.microBatches, Math.floor(batch.length / replicas)));
  const leases: number[][] = [];
  let at = 0;
  for (let r = 0; r < replicas; r++) {
    const rows = Math.floor(batch.length / replicas) + (r < batch.length % replicas ? 1 : 0);
    leases.push(batch.slice(at, at + rows));
    at += rows;
  }
  return { plan: { ...plan, replicas: plan.replicas.slice(0, replicas), microBatches }, leases };
}

export type PipelineTally =
  | { kind: "agreed"; hash: string; stageHashes: string[]; dissenters: string[] }
  | { kind: "split"; detail: string };

/**
 * How a pipeline round's reports decide it: each stage by itself, like a data-parallel round
 * (tally: all agree, or a strict majority of three or more), on the stage hash each member
 * reported. A report whose layer hashes are not one per layer of its stage, or do not combine to
 * its hash, counts as a hash of its own. The round's hash combines the agreed stages' layer hashes
 * in layer order: the hash of the whole state, which no member holds.
 */
export function pipelineTally(plan: PipelinePlan, reports: ReadonlyMap<string, RoundReport>, combine: (hashes: readonly string[]) => string): PipelineTally {
  const stageHashes: string[] = [];
  const layers: string[] = [];
  const dissenters: string[] = [];
  for (const [stage, range] of plan.stages.entries()) {
    const votes = new Map<string, RoundReport>();
    for (const peer of stageMembers(plan, stage)) {
      const report = reports.get(peer);
      if (report === undefined) return { kind: "split", detail: `no report from ${peer} (stage ${stage})` };
      const own = report.layerHashes;
      const consistent = own !== undefined && own.length === range.to - range.from && combine(own) === report.hash;
      votes.set(peer, consistent ? report : { ...report, hash: `inconsistent:${peer}` });
    }
    const vote = tally(votes);
    if (vote.kind === "split") return { kind: "split", detail: `stage ${stage}: ${vote.detail}` };
    const agreeing = [...votes].find(([peer]) => !vote.dissenters.includes(peer));
    if (agreeing === undefined || vote.hash.startsWith("inconsistent:")) return { kind: "split", detail: `stage ${stage}: no consistent report` };
    stageHashes.push(vote.hash);
    layers.push(...(agreeing[1].layerHashes ?? []));
    dissenters.push(...vote.dissenters);
  }
  return { kind: "agreed", hash: combine(layers), stageHashes, dissenters };
}

/** Sample-weighted mean loss of a pipeline round: only a replica's last stage computes its loss. */
export function pipelineLoss(plan: PipelinePlan, leases: readonly (readonly number[])[], reports: ReadonlyMap<string, RoundReport>): number {
  let samples = 0;
  let weighted = 0;
  for (const [replica, row] of plan.replicas.entries()) {
    const report = reports.get(row.at(-1) as string);
    const rows = leases[replica]?.length ?? 0;
    if (report === undefined) continue;
    samples += rows;
    weighted += report.loss * rows;
  }
  return samples > 0 ? weighted / samples : Number.NaN;
}
