import { describe, expect, it } from "vitest";
import { stageMembers, type PipelinePlan } from "@crowdtrain/protocol";
import { keepStages, pipelineTally, shareBatch, type PipelineCoordination, type RoundReport } from "../src/index.ts";
import { Harness, HASH, TIMINGS } from "./sim.ts";

/** A stand-in for sha256 over the hashes (the server passes training's combineLayerHashes). */
const combine = (hashes: readonly string[]): string => {
  let h = 0x811c9dc5;
  for (const ch of hashes.join("|")) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0").repeat(8);
};
const TWO_STAGES = [
  { from: 0, to: 2 },
  { from: 2, to: 4 },
];
/** A 4-layer model: two stages of two layers from two members on, else one stage (like buildPipelinePlan). */
const planner: PipelineCoordination["plan"] = (members) => {
  const stages = members.length >= 2 ? TWO_STAGES : [{ from: 0, to: 4 }];
  const k = stages.length;
  const replicas = Array.from({ length: Math.floor(members.length / k) }, (_, r) => members.slice(r * k, r * k + k).map((m) => m.id));
  return { ok: true, plan: { kind: "pipeline", stages, replicas, microBatches: 2, schedule: "gpipe" } };
};
const pipelineHarness = (minWorkers: number, batchSize = 12): Harness => Harness.create({ minWorkers, batchSize, leaseAhead: false, pipeline: { plan: planner, combine } });

/** Each layer's hash after round `round` (every honest replica computes the same). */
const layerHash = (round: number, layer: number): string => HASH(round * 100 + layer + 1);
const stageLayers = (round: number, range: { from: number; to: number }): string[] => Array.from({ length: range.to - range.from }, (_, i) => layerHash(round, range.from + i));

function report(layers: string[], samples: number): RoundReport {
  return { hash: combine(layers), layerHashes: layers, samples, loss: 1, timings: TIMINGS, bytesSent: 1, bytesReceived: 1 };
}

/** Every member of the open pipeline round reports its stage's layer hashes (optionally a wrong one for `bad`). */
function reportStages(h: Harness, bad?: string): void {
  const round = h.coordinator.state.current;
  const plan = round?.pipeline;
  if (round === undefined || plan === undefined) throw new Error("no open pipeline round");
  for (const [r, row] of plan.replicas.entries()) {
    for (const [k, peer] of row.entries()) {
      const range = plan.stages[k] as { from: number; to: number };
      const layers = peer === bad ? stageLayers(round.round + 50, range) : stageLayers(round.round, range);
      const lease = h.lastTo(row[0] as string, "round")?.lease.length ?? 0;
      h.now += 1;
      h.apply({ type: "result", peerId: peer, attempt: round.attempt, ...report(layers, lease), loss: r + 1, now: h.now });
    }
  }
}

/** The server checked replica 0's stage uploads of the open round. */
function checkStages(h: Harness): void {
  const round = h.coordinator.state.current;
  const plan = round?.pipeline;
  if (round === undefined || plan === undefined) throw new Error("no open pipeline round");
  for (const [k, peer] of (plan.replicas[0] as string[]).entries()) {
    h.apply({ type: "state-checked", peerId: peer, round: round.round, attempt: round.attempt, hash: combine(stageLayers(round.round, plan.stages[k] as { from: number; to: number })), problem: undefined, now: h.now });
  }
}

describe("pipeline rounds: the pure parts", () => {
  const plan: PipelinePlan = { kind: "pipeline", stages: TWO_STAGES, replicas: [["a", "b"], ["c", "d"]], microBatches: 2, schedule: "gpipe" };

  it("keepStages keeps holders on their stage, fills gaps with whole-state holders, and names who must sync", () => {
    // d and a swapped stages relative to what they hold; e holds the whole state.
    const held: Record<string, { from: number; to: number } | undefined> = { a: TWO_STAGES[1], b: TWO_STAGES[1], c: TWO_STAGES[0], d: TWO_STAGES[0] };
    const kept = keepStages(plan, (peer) => held[peer]);
    expect(stageMembers(kept.plan, 0).sort()).toEqual(["c", "d"]);
    expect(stageMembers(kept.plan, 1).sort()).toEqual(["a", "b"]);
    expect(kept.mustSync).toEqual([]);
    // Three hold stage 1 for two places: the third moves and must fetch the whole state.
    const crowded = keepStages(plan, (peer) => (peer === "d" ? TWO_STAGES[1] : held[peer]));
    expect(crowded.mustSync).toHaveLength(1);
    expect(stageMembers(crowded.plan, 1)).not.toContain(crowded.mustSync[0]);
    // A whole-state holder goes before a member of another stage.
    const joiner = keepStages(plan, (peer) => (peer === "a" ? undefined : TWO_STAGES[0]));
    expect(stageMembers(joiner.plan, 1)).toContain("a");
  });

  it("shareBatch gives each replica a disjoint share, and drops replicas a short batch cannot feed", () => {
    const batch = [...Array(11).keys()];
    const shared = shareBatch(plan, batch);
    expect(shared.leases.map((l) => l.length)).toEqual([6, 5]);
    expect(shared.leases.flat()).toEqual(batch);
    const tail = shareBatch(plan, [1, 2, 3]);
    expect(tail.plan.replicas).toEqual([["a", "b"]]);
    expect(tail.plan.microBatches).toBe(2);
    expect(shareBatch(plan, [9]).plan).toMatchObject({ replicas: [["a", "b"]], microBatches: 1 });
  });

  it("pipelineTally decides stage by stage and combines the agreed layer hashes in layer order", () => {
    const reports = new Map<string, RoundReport>([
      ["a", report(stageLayers(1, TWO_STAGES[0]!), 6)],
      ["c", report(stageLayers(1, TWO_STAGES[0]!), 6)],
      ["b", report(stageLayers(1, TWO_STAGES[1]!), 6)],
      ["d", report(stageLayers(1, TWO_STAGES[1]!), 6)],
    ]);
    const agreed = pipelineTally(plan, reports, combine);
    expect(agreed).toEqual({ kind: "agreed", hash: combine([0, 1, 2, 3].map((l) => layerHash(1, l))), stageHashes: TWO_STAGES.map((s) => combine(stageLayers(1, s))), dissenters: [] });
    // Stage 1's two replicas disagree: nobody can tell who is wrong.
    const split = pipelineTally(plan, new Map([...reports, ["d", report(stageLayers(2, TWO_STAGES[1]!), 6)]]), combine);
    expect(split).toMatchObject({ kind: "split" });
    expect(split.kind === "split" && split.detail).toMatch(/^stage 1:/);
    // Layer hashes that do not combine to the reported hash are a vote of their own.
    const forged = { ...report(stageLayers(1, TWO_STAGES[0]!), 6), layerHashes: stageLayers(9, TWO_STAGES[0]!) };
    expect(pipelineTally(plan, new Map([...reports, ["c", forged]]), combine)).toMatchObject({ kind: "split" });
    const short = { ...report(stageLayers(1, TWO_STAGES[0]!).slice(0, 1), 6) };
    expect(pipelineTally(plan, new Map([...reports, ["c", short]]), combine)).toMatchObject({ kind: "split" });
  });
});

describe("pipeline rounds in the coordinator", () => {
  it("opens R replicas × K stages: every member gets its replica's lease, its stage's ring and the plan", () => {
    const h = pipelineHarness(4);
    for (const peer of ["a", "b", "c", "d"]) h.join(peer);
    const round = h.coordinator.state.current!;
    expect(round.pipeline).toMatchObject({ stages: TWO_STAGES, replicas: [["a", "b"], ["c", "d"]] });
    const a = h.lastTo("a", "round")!;
    const b = h.lastTo("b", "round")!;
    const c = h.lastTo("c", "round")!;
    expect(b.lease).toEqual(a.lease);
    expect(new Set([...a.lease, ...c.lease]).size).toBe(12);
    expect(a.plan).toEqual({ kind: "ring", members: ["a", "c"] });
    expect(b.plan).toEqual({ kind: "ring", members: ["b", "d"] });
    expect([a.upload, b.upload, c.upload]).toEqual([true, true, false]);
    expect(a.pipeline?.replicas).toEqual([["a", "b"], ["c", "d"]]);
    expect(h.coordinator.uploadSlots("b")).toEqual([{ kind: "pending", round: 1, attempt: round.attempt, stage: { index: 1, from: 2, to: 4 } }]);
    expect(h.coordinator.uploadSlots("c")).toEqual([]);
  });

  it("commits only once every stage agrees and the server checked every stage's state; then members keep their stages", () => {
    const h = pipelineHarness(4);
    for (const peer of ["a", "b", "c", "d"]) h.join(peer);
    const first = h.coordinator.state.current!;
    reportStages(h);
    expect(h.coordinator.state.committedRound).toBe(0);
    checkStages(h);
    expect(h.coordinator.state.committedRound).toBe(1);
    const whole = combine([0, 1, 2, 3].map((l) => layerHash(1, l)));
    expect(h.coordinator.state.committedHash).toBe(whole);
    expect(h.lastTo("d", "commit")).toEqual({ type: "commit", attempt: first.attempt, round: 1, hash: whole });
    const committed = h.effects.find((e) => e.type === "committed");
    expect(committed?.type === "committed" && committed.commit).toMatchObject({ samples: 12, loss: 1.5, pipeline: { stageHashes: TWO_STAGES.map((s) => combine(stageLayers(1, s))) } });
    expect(h.member("b")?.stage).toEqual(TWO_STAGES[1]);
    expect(h.coordinator.state.epochProgress.used).toBe(12);
    // The next round: the same places, no sync.
    expect(h.coordinator.state.current?.pipeline?.replicas).toEqual([["a", "b"], ["c", "d"]]);
    expect(h.lastTo("a", "sync")).toBeUndefined();
  });

  it("a stage's replicas disagreeing abort the round without counting a sample", () => {
    const h = pipelineHarness(4);
    for (const peer of ["a", "b", "c", "d"]) h.join(peer);
    reportStages(h, "d");
    checkStages(h);
    expect(h.coordinator.state.committedRound).toBe(0);
    expect(h.logs("aborted").at(-1)).toMatch(/stage 1/);
    expect(h.coordinator.state.epochProgress.used).toBe(0);
  });

  it("a stage uploader's state failing the server's check aborts the round and strikes it", () => {
    const h = pipelineHarness(4);
    for (const peer of ["a", "b", "c", "d"]) h.join(peer);
    const round = h.coordinator.state.current!;
    reportStages(h);
    h.apply({ type: "state-checked", peerId: "b", round: 1, attempt: round.attempt, hash: "", problem: "weight 3 is NaN", now: h.now });
    expect(h.coordinator.state.committedRound).toBe(0);
    expect(h.member("b")?.strikes).toBe(1);
  });

  it("a stage tab lost mid-round: the round aborts, the spare takes its place, the others keep theirs, every sample once", () => {
    const h = pipelineHarness(5);
    for (const peer of ["a", "b", "c", "d", "e"]) h.join(peer);
    expect(h.coordinator.state.current?.pipeline?.replicas).toEqual([["a", "b"], ["c", "d"]]);
    reportStages(h);
    checkStages(h);
    // e sat out round 1: it fetches the committed (whole) state, and round 2 does not wait for it.
    expect(h.lastTo("e", "sync")).toEqual({ type: "sync", round: 1 });
    expect(h.coordinator.state.current?.round).toBe(2);
    h.apply({ type: "ready", peerId: "e", round: 1, hash: h.coordinator.state.committedHash, now: h.now });
    h.apply({ type: "leave", peerId: "d", reason: "tab closed", now: h.now });
    expect(h.logs("aborted").at(-1)).toMatch(/d left/);
    h.now += 10;
    h.apply({ type: "tick", now: h.now });
    const replanned = h.coordinator.state.current!;
    expect(stageMembers(replanned.pipeline!, 0).sort()).toEqual(["a", "c"]);
    expect(stageMembers(replanned.pipeline!, 1).sort()).toEqual(["b", "e"]);
    // Six more rounds: 7 × 12 of the epoch's 100 samples.
    for (let round = 0; round < 6; round++) {
      reportStages(h);
      checkStages(h);
    }
    const coverage = h.coordinator.coverage();
    expect(Math.max(...coverage)).toBe(1);
    expect(coverage.reduce((sum, uses) => sum + uses, 0)).toBe(12 * 7);
  });

  it("a member placed on layers it does not hold fetches the whole state before the round opens", () => {
    const h = pipelineHarness(2);
    h.join("a");
    h.join("b");
    reportStages(h);
    checkStages(h);
    expect(h.member("b")?.stage).toEqual(TWO_STAGES[1]);
    h.apply({ type: "leave", peerId: "a", reason: "tab closed", now: h.now });
    h.now += 10;
    h.apply({ type: "tick", now: h.now });
    // One member left: one stage of all four layers, which b holds only half of.
    expect(h.coordinator.state.current).toBeUndefined();
    expect(h.lastTo("b", "sync")).toEqual({ type: "sync", round: 1 });
    h.apply({ type: "ready", peerId: "b", round: 1, hash: h.coordinator.state.committedHash, now: h.now });
    expect(h.coordinator.state.current?.pipeline).toMatchObject({ stages: [{ from: 0, to: 4 }], replicas: [["b"]] });
  });

  it("a planner that finds no plan is logged once and no round opens", () => {
    const h = Harness.create({ minWorkers: 1, leaseAhead: false, pipeline: { plan: () => ({ ok: false, reason: "stage 0 needs 90 MiB, the smallest budget is 64 MiB" }), combine } });
    h.join("a");
    h.apply({ type: "tick", now: 1 });
    expect(h.coordinator.state.current).toBeUndefined();
    expect(h.logs("plan")).toEqual(["no pipeline plan from 1 ready members: stage 0 needs 90 MiB, the smallest budget is 64 MiB"]);
  });
});

describe("a pipeline uploader outvoted by its stage's replicas", () => {
  it("aborts the round at once and strikes the uploader, instead of waiting out the deadline", () => {
    const h = pipelineHarness(6, 18);
    for (const peer of ["a", "b", "c", "d", "e", "f"]) h.join(peer);
    const round = h.coordinator.state.current!;
    expect(round.pipeline?.replicas).toEqual([["a", "b"], ["c", "d"], ["e", "f"]]);
    // a (replica 0, stage 0) computes another update than c and e, and uploads it.
    reportStages(h, "a");
    const wrong = combine(stageLayers(round.round + 50, TWO_STAGES[0]!));
    h.apply({ type: "state-checked", peerId: "a", round: 1, attempt: round.attempt, hash: wrong, problem: undefined, now: h.now });
    h.apply({ type: "state-checked", peerId: "b", round: 1, attempt: round.attempt, hash: combine(stageLayers(1, TWO_STAGES[1]!)), problem: undefined, now: h.now });
    expect(h.coordinator.state.committedRound).toBe(0);
    expect(h.logs("aborted").at(-1)).toMatch(/a uploaded a stage state other than its replicas agreed on/);
    expect(h.member("a")?.strikes).toBe(1);
  });
});
