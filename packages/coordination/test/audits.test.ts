import { describe, expect, it } from "vitest";
import { Audits, Lineage, mulberry32, Sampler, type CoordinatorEffect } from "../src/index.ts";
import { Harness, HASH } from "./sim.ts";

const DIGEST = (peer: string): string => [...peer].map((c) => c.charCodeAt(0).toString(16)).join("").padEnd(64, "d");

/** Every member enters the all-reduce with a digest, then reports the same hash. */
function honestRound(h: Harness, skipDigest: string[] = []): number {
  const round = h.coordinator.state.current!;
  for (const peer of round.members) {
    if (skipDigest.includes(peer)) continue;
    h.apply({ type: "phase", peerId: peer, attempt: round.attempt, phase: "reducing", digest: DIGEST(peer), now: h.now });
  }
  h.reportAll();
  // The server stores each committed state (the uploader sent it).
  h.apply({ type: "state-stored", round: round.round, now: h.now });
  return round.round;
}

const audited = (h: Harness): CoordinatorEffect[] => h.effects.filter((e) => e.type === "audited");
const rollbacks = (h: Harness) => h.effects.flatMap((e) => (e.type === "rolled-back" ? [e] : []));
/** A random source that audits exactly the draws listed (0-based over every draw). */
const auditDraws = (picked: number[]): (() => number) => {
  let draw = 0;
  return () => (picked.includes(draw++) ? 0 : 0.99);
};

describe("spot checks by replication", () => {
  it("with probability 0 nobody is audited; with 1 every member of every committed round is", () => {
    const off = Harness.create({ minWorkers: 2, spotCheck: 0 });
    ["a", "b"].forEach((p) => off.join(p));
    honestRound(off);
    expect(off.lastTo("a", "audit")).toBeUndefined();

    const on = Harness.create({ minWorkers: 2, spotCheck: 1 });
    ["a", "b"].forEach((p) => on.join(p));
    const round = honestRound(on);
    expect(on.lastTo("a", "audit")).toMatchObject({ type: "audit", round });
    expect(on.lastTo("b", "audit")).toMatchObject({ type: "audit", round });
    // The slot tells the server what to compare the upload with.
    const slot = on.coordinator.auditSlot("a", round)!;
    expect(slot).toMatchObject({ round, digest: DIGEST("a"), baseRound: round - 1 });
    expect(slot.lease.length).toBeGreaterThan(0);
    expect(on.coordinator.auditSlot("a", round + 1)).toBeUndefined();
  });

  it("the draw happens after the commit: the round message says nothing about an audit", () => {
    const h = Harness.create({ minWorkers: 2, spotCheck: 1 });
    ["a", "b"].forEach((p) => h.join(p));
    expect(Object.keys(h.lastTo("a", "round")!)).not.toContain("audit");
    expect(h.lastTo("a", "audit")).toBeUndefined();
    honestRound(h);
    expect(h.lastTo("a", "audit")).toBeDefined();
  });

  it("a passed audit is counted and trusted; nothing is rolled back", () => {
    const h = Harness.create({ minWorkers: 2, spotCheck: 1 });
    ["a", "b"].forEach((p) => h.join(p));
    const round = honestRound(h);
    h.apply({ type: "audit-checked", peerId: "a", round, outcome: "passed", relativeError: 1e-7, detail: "within tolerance", now: h.now });
    expect(h.member("a")?.audits).toEqual({ passed: 1, failed: 0 });
    expect(audited(h)).toHaveLength(1);
    expect(rollbacks(h)).toHaveLength(0);
    // Settled: a second verdict for the same audit changes nothing.
    h.apply({ type: "audit-checked", peerId: "a", round, outcome: "failed", detail: "again", now: h.now });
    expect(h.member("a")?.audits).toEqual({ passed: 1, failed: 0 });
  });

  it("a failed audit evicts the member and rolls back every round it touched since its last passed audit", () => {
    // Draws per commit: a, b, c. Audit a in round 1 (passes), then c in round 3 (fails).
    const h = Harness.create({ minWorkers: 3, spotCheck: 0.5, random: auditDraws([0, 8]) });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const r1 = honestRound(h);
    h.apply({ type: "audit-checked", peerId: "a", round: r1, outcome: "passed", relativeError: 0, detail: "ok", now: h.now });
    honestRound(h);
    const usedBefore = h.coordinator.state.epochProgress.used;
    const r3 = honestRound(h);
    expect(h.lastTo("c", "audit")?.round).toBe(r3);
    h.apply({ type: "audit-checked", peerId: "c", round: r3, outcome: "failed", relativeError: 2, detail: "off by 2", now: h.now });

    // c never passed an audit: everything since round 1, its first round, is undone (back to round 0).
    const [rollback] = rollbacks(h);
    expect(rollback).toMatchObject({ round: 4, to: 0, hash: "0".repeat(64), undone: [1, 2, 3] });
    expect(h.coordinator.state.committedRound).toBe(4);
    expect(h.coordinator.state.committedHash).toBe("0".repeat(64));
    expect(h.member("c")).toBeUndefined();
    expect(h.effects).toContainEqual(expect.objectContaining({ type: "disconnect", peerId: "c" }));
    expect(h.lastTo("c", "stop")?.reason).toMatch(/failed the spot check of round 3: off by 2/);
    expect(h.lastTo("a", "sync")).toEqual({ type: "sync", round: 4 });
    expect(h.logs("rollback").at(-1)).toMatch(/undid rounds 1\.\.3; round 4 restarts from the state of round 0/);
    // The undone rounds' samples are unused again and go back to the queue.
    expect(h.coordinator.state.epochProgress.used).toBe(usedBefore - 2 * 12);
    expect(h.coordinator.state.epochProgress.used).toBe(0);
  });

  it("rolls back only to the offender's last passed audit, and a second failure never returns to a dead branch", () => {
    // Draws: r1 a b, r2 a b, r3 a b ... audit b in round 2 (passes), then b in round 4 (fails).
    const h = Harness.create({ minWorkers: 2, spotCheck: 0.5, random: auditDraws([3, 7]) });
    ["a", "b"].forEach((p) => h.join(p));
    honestRound(h);
    const r2 = honestRound(h);
    h.apply({ type: "audit-checked", peerId: "b", round: r2, outcome: "passed", relativeError: 0, detail: "ok", now: h.now });
    honestRound(h);
    const r4 = honestRound(h);
    h.apply({ type: "audit-checked", peerId: "b", round: r4, outcome: "failed", detail: "bad", now: h.now });
    expect(rollbacks(h)[0]).toMatchObject({ round: 5, to: 2, undone: [3, 4] });
    // The rollback commit is stored by the server; the job goes on from round 5.
    h.apply({ type: "state-stored", round: 5, now: h.now });
    h.apply({ type: "ready", peerId: "a", round: 5, hash: HASH(2), now: h.now });
    expect(h.coordinator.state.current?.round).toBe(6);
  });

  it("a round target moves by the rounds undone, so the job still trains as many rounds as asked", () => {
    const h = Harness.create({ minWorkers: 2, spotCheck: 1, maxRounds: 3 });
    ["a", "b"].forEach((p) => h.join(p));
    const r1 = honestRound(h);
    h.apply({ type: "audit-checked", peerId: "a", round: r1, outcome: "passed", relativeError: 0, detail: "ok", now: h.now });
    h.apply({ type: "audit-checked", peerId: "b", round: r1, outcome: "failed", detail: "bad", now: h.now });
    // Round 1 undone, round 2 is the rollback: rounds 3..5 train, so the target moves from 3 to 5.
    expect(h.coordinator.state.maxRounds).toBe(5);
    expect(h.logs("rollback").at(-1)).toMatch(/the target moves to 5 rounds to retrain them/);
    h.join("c");
    h.apply({ type: "state-stored", round: 2, now: h.now });
    h.apply({ type: "ready", peerId: "a", round: 2, hash: "0".repeat(64), now: h.now });
    for (let k = 0; k < 3; k++) honestRound(h);
    expect(h.coordinator.state).toMatchObject({ status: "done", committedRound: 5 });
  });

  it("an audit unanswered by its deadline, or dodged by leaving, fails and rolls back", () => {
    const late = Harness.create({ minWorkers: 2, spotCheck: 1, auditTimeoutMs: 1_000 });
    ["a", "b"].forEach((p) => late.join(p));
    const round = honestRound(late);
    late.apply({ type: "audit-checked", peerId: "a", round, outcome: "passed", relativeError: 0, detail: "ok", now: late.now });
    late.now += 1_001;
    expect(late.coordinator.nextWakeAt()).toBeLessThanOrEqual(late.now);
    late.apply({ type: "tick", now: late.now });
    expect(late.logs("audit").at(-1)).toMatch(/b in round 1 FAILED: no contribution uploaded within 1 s/);
    expect(late.member("b")).toBeUndefined();
    expect(rollbacks(late)).toHaveLength(1);

    const dodge = Harness.create({ minWorkers: 2, spotCheck: 1 });
    ["a", "b"].forEach((p) => dodge.join(p));
    honestRound(dodge);
    dodge.apply({ type: "leave", peerId: "b", reason: "tab closed", now: dodge.now });
    expect(dodge.logs("audit").at(-1)).toMatch(/b in round 1 FAILED: it left before answering \(.*tab closed\)/);
    expect(rollbacks(dodge)[0]).toMatchObject({ to: 0, undone: [1] });
  });

  it("an answered audit waits for the server's verdict, whether or not the member stays; the server's own delay blames nobody", () => {
    const start = (): { h: Harness; round: number } => {
      const h = Harness.create({ minWorkers: 3, spotCheck: 1, auditTimeoutMs: 1_000 });
      ["a", "b", "c"].forEach((p) => h.join(p));
      honestRound(h);
      for (const peer of ["a", "c"]) h.apply({ type: "audit-checked", peerId: peer, round: 1, outcome: "passed", relativeError: 0, detail: "ok", now: h.now });
      const round = honestRound(h);
      for (const peer of ["a", "c"]) h.apply({ type: "audit-checked", peerId: peer, round, outcome: "passed", relativeError: 0, detail: "ok", now: h.now });
      // b passed round 1's audit; its contribution to round 2 has arrived when it leaves.
      h.apply({ type: "audit-checked", peerId: "b", round: 1, outcome: "passed", relativeError: 0, detail: "ok", now: h.now });
      h.apply({ type: "audit-received", peerId: "b", round, now: h.now });
      h.apply({ type: "leave", peerId: "b", reason: "tab closed", now: h.now });
      return { h, round };
    };

    const honest = start();
    expect(honest.h.logs("audit").join("\n")).not.toMatch(/FAILED/);
    expect(rollbacks(honest.h)).toHaveLength(0);
    honest.h.apply({ type: "audit-checked", peerId: "b", round: honest.round, outcome: "passed", relativeError: 0, detail: "ok", now: honest.h.now });
    expect(honest.h.logs("audit").at(-1)).toMatch(/b in round 2 passed/);
    expect(rollbacks(honest.h)).toHaveLength(0);

    // A liar that leaves after uploading is still caught, and rolled back only past its last pass.
    const liar = start();
    liar.h.apply({ type: "audit-checked", peerId: "b", round: liar.round, outcome: "failed", relativeError: 3, detail: "far from the recomputation", now: liar.h.now });
    expect(liar.h.logs("audit").at(-1)).toMatch(/b in round 2 FAILED: far from the recomputation/);
    expect(rollbacks(liar.h)[0]).toMatchObject({ to: 1, undone: [2] });

    // An answered audit does not expire: the verdict may take the server as long as it takes.
    const slow = start();
    slow.h.now += 10_000;
    slow.h.apply({ type: "tick", now: slow.h.now });
    expect(rollbacks(slow.h)).toHaveLength(0);
    slow.h.apply({ type: "audit-checked", peerId: "b", round: slow.round, outcome: "failed", relativeError: 3, detail: "late but damning", now: slow.h.now });
    expect(rollbacks(slow.h)[0]).toMatchObject({ to: 1, undone: [2] });

    // A member that leaves with an unanswered audit is rolled back only to its last pass, too.
    const dodger = start();
    honestRound(dodger.h);
    dodger.h.apply({ type: "leave", peerId: "a", reason: "tab closed", now: dodger.h.now });
    expect(dodger.h.logs("audit").at(-1)).toMatch(/a in round 3 FAILED: it left before answering/);
    expect(rollbacks(dodger.h)[0]).toMatchObject({ to: 2, undone: [3] });
  });

  it("draws no audits of a round whose starting state the server lacks (they could only be inconclusive)", () => {
    const h = Harness.create({ minWorkers: 2, spotCheck: 1 });
    ["a", "b"].forEach((p) => h.join(p));
    // Round 1 commits but its state never reaches the server (its upload lost the race with round 2's).
    let round = h.coordinator.state.current!;
    for (const peer of round.members) h.apply({ type: "phase", peerId: peer, attempt: round.attempt, phase: "reducing", digest: DIGEST(peer), now: h.now });
    h.reportAll();
    for (const peer of ["a", "b"]) h.apply({ type: "audit-checked", peerId: peer, round: 1, outcome: "passed", relativeError: 0, detail: "ok", now: h.now });
    const before = audited(h).length;
    round = h.coordinator.state.current!;
    for (const peer of round.members) h.apply({ type: "phase", peerId: peer, attempt: round.attempt, phase: "reducing", digest: DIGEST(peer), now: h.now });
    h.reportAll();
    expect(h.logs("audit").at(-1)).toMatch(/no spot checks of round 2: the server lacks the state of round 1/);
    expect(h.coordinator.auditSlot("a", 2)).toBeUndefined();
    expect(audited(h)).toHaveLength(before);
    // Once states arrive again, audits resume.
    h.apply({ type: "state-stored", round: 2, now: h.now });
    honestRound(h);
    expect(h.coordinator.auditSlot("a", 3)).toBeDefined();
  });

  it("a member that committed to no digest fails its audit at once", () => {
    const h = Harness.create({ minWorkers: 2, spotCheck: 1 });
    ["a", "b"].forEach((p) => h.join(p));
    honestRound(h, ["b"]);
    expect(h.logs("audit").join("\n")).toMatch(/b in round 1 FAILED: it committed to no digest/);
    expect(h.member("b")).toBeUndefined();
    expect(h.coordinator.auditSlot("b", 1)).toBeUndefined();
  });

  it("an inconclusive audit blames nobody", () => {
    const h = Harness.create({ minWorkers: 2, spotCheck: 1 });
    ["a", "b"].forEach((p) => h.join(p));
    const round = honestRound(h);
    h.apply({ type: "audit-checked", peerId: "b", round, outcome: "inconclusive", detail: "state gone", now: h.now });
    expect(h.member("b")?.audits).toEqual({ passed: 0, failed: 0 });
    expect(rollbacks(h)).toHaveLength(0);
  });

  it("audits in flight are bounded, and a finished job drops its pending audits", () => {
    const h = Harness.create({ minWorkers: 3, spotCheck: 1, maxPendingAudits: 2, maxRounds: 2 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    honestRound(h);
    expect(h.effects.filter((e) => e.type === "send" && e.message.type === "audit")).toHaveLength(2);
    honestRound(h); // the last round: the job finishes, nothing is drawn
    expect(h.coordinator.state.status).toBe("done");
    h.apply({ type: "leave", peerId: "a", reason: "stopped", now: h.now });
    expect(rollbacks(h)).toHaveLength(0);
  });
});

describe("Audits.draw in a large swarm", () => {
  it("gives the few slots to a uniform choice of the members drawn, wherever they stand in the plan", () => {
    const members = 200;
    const audits = new Audits(0.1, 4, 30_000, mulberry32(7));
    const candidates = Array.from({ length: members }, (_, k) => ({ peerId: `p${k}`, lease: [k], digest: "d" }));
    const checked = new Array<number>(members).fill(0);
    const rounds = 2_000;
    for (let round = 1; round <= rounds; round++) {
      const drawn = audits.draw(candidates, round, round, 0);
      expect(drawn.length).toBeLessThanOrEqual(4);
      for (const audit of drawn) {
        checked[Number(audit.peerId.slice(1))]!++;
        audits.settle(audit.peerId, round, true);
      }
    }
    // 4 slots a round over 200 members: 40 checks each on average. In the plan's order, the last
    // members were never checked (the first forty or so took every slot).
    const first = checked.slice(0, 20).reduce((a, b) => a + b, 0);
    const last = checked.slice(-20).reduce((a, b) => a + b, 0);
    expect(Math.min(...checked)).toBeGreaterThan(15);
    expect(last / first).toBeGreaterThan(0.8);
    expect(last / first).toBeLessThan(1.25);
  });
});

describe("Lineage", () => {
  it("rolls back to the newest stored round before the offender's first unaudited one", () => {
    const lineage = new Lineage(4);
    lineage.start(0, HASH(0), 0);
    for (const round of [1, 2, 3, 4]) lineage.push({ round, hash: HASH(round), epoch: 0, members: new Set(round >= 3 ? ["x", "y"] : ["y"]), samples: [round] });
    [1, 3].forEach((r) => lineage.markStored(r));
    // Window 4: round 0 fell out. x first touched round 3; round 2 was never stored, so round 1.
    expect(lineage.rollbackFor("x", -1)).toMatchObject({ to: { round: 1 }, truncated: false });
    expect(lineage.rollbackFor("x", -1)?.undone.map((e) => e.round)).toEqual([2, 3, 4]);
    expect(lineage.rollbackFor("x", 4)).toBeUndefined();
    expect(lineage.rollbackFor("nobody", -1)).toBeUndefined();
    // y touched round 1 onwards, and nothing older is held: the oldest stored state, flagged.
    expect(lineage.rollbackFor("y", -1)).toMatchObject({ to: { round: 1 }, truncated: true });
  });
});

describe("Sampler.unmarkUsed", () => {
  it("makes rolled-back samples unused again and leases them first", () => {
    const sampler = new Sampler(10, 1);
    const lease = sampler.take(4);
    sampler.markUsed(lease);
    expect(sampler.progress().used).toBe(4);
    sampler.unmarkUsed(lease);
    expect(sampler.progress().used).toBe(0);
    expect(sampler.take(4)).toEqual(lease);
    expect(() => sampler.unmarkUsed([lease[0] as number])).toThrow(/never used/);
  });
});
