import { describe, expect, it } from "vitest";
import { Harness } from "./sim.ts";

/** Sends of each type to `peer`, in order. */
const sentTo = (h: Harness, peer: string): string[] => h.effects.flatMap((e) => (e.type === "send" && e.to === peer ? [e.message.type] : []));

describe("member roles", () => {
  it("a tab that joins to serve is never in a round, never asked to sync, and no round waits for it", () => {
    const h = Harness.create({ minWorkers: 2, maxRounds: 3 });
    h.apply({ type: "join", peerId: "srv", backend: "cpu", role: "server", now: 0 });
    expect(h.member("srv")?.state).toBe("serving");
    h.join("a");
    // One trainer and a server: the job waits for its second trainer.
    expect(h.coordinator.state.current).toBeUndefined();
    h.join("b");
    expect(h.coordinator.state.current?.members).toEqual(["a", "b"]);
    h.reportAll();
    // A server that says it holds a stale round is not told to sync: it follows commits by itself.
    h.apply({ type: "ready", peerId: "srv", round: 0, hash: "0".repeat(64), now: h.now });
    h.reportAll();
    expect(h.coordinator.state.committedRound).toBe(2);
    expect(sentTo(h, "srv")).toEqual([]);
    expect(h.member("srv")?.state).toBe("serving");
    expect(h.logs("joined")[0]).toMatch(/srv joined \(cpu, as server\)/);
  });

  it("a trainer moved to serving finishes its round first, then hears its role after the commit and sits out the next round", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    expect(h.coordinator.state.current?.members).toEqual(["a", "b", "c"]);
    h.apply({ type: "set-role", peerId: "c", role: "server", now: h.now });
    // Deferred: the open round is not disturbed.
    expect(h.member("c")?.role).toBe("trainer");
    expect(h.effects.some((e) => e.type === "role-changed")).toBe(false);
    h.reportAll();
    expect(h.coordinator.state.committedRound).toBe(1);
    expect(h.member("c")).toMatchObject({ role: "server", state: "serving" });
    // The commit reaches it before the role: it adopts the round it helped compute.
    expect(sentTo(h, "c").slice(-2)).toEqual(["commit", "role"]);
    expect(h.lastTo("c", "role")).toEqual({ type: "role", role: "server" });
    expect(h.effects.filter((e) => e.type === "role-changed")).toEqual([{ type: "role-changed", peerId: "c", role: "server" }]);
    expect(h.coordinator.state.current?.members).toEqual(["a", "b"]);
    expect(h.logs("role")).toEqual(["c moves to serving"]);
  });

  it("a move made between rounds applies at once; a serving member moved back is asked to sync and trains again", () => {
    const h = Harness.create({ minWorkers: 2, maxRounds: 10 });
    h.apply({ type: "join", peerId: "s", backend: "cpu", now: 0 });
    h.apply({ type: "set-role", peerId: "s", role: "server", now: 0 });
    expect(h.member("s")).toMatchObject({ role: "server", state: "serving" });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll();
    expect(h.coordinator.state.current?.members).toEqual(["a", "b"]);
    h.apply({ type: "set-role", peerId: "s", role: "trainer", now: h.now });
    expect(h.member("s")).toMatchObject({ role: "trainer", state: "joining" });
    expect(sentTo(h, "s").slice(-2)).toEqual(["role", "sync"]);
    h.reportAll();
    const s = h.coordinator.state;
    h.apply({ type: "ready", peerId: "s", round: s.committedRound, hash: s.committedHash, now: h.now });
    expect(h.coordinator.state.current?.members).toEqual(["a", "b", "s"]);
  });

  it("the leases handed out ahead to a member that moves go back to the queue: no sample lost or doubled", () => {
    const h = Harness.create({ minWorkers: 2, trainCount: 64, batchSize: 16, maxRounds: 100, leaseAhead: true });
    ["a", "b"].forEach((p) => h.join(p));
    expect(h.lastTo("b", "round")?.next?.length).toBeGreaterThan(0);
    h.apply({ type: "set-role", peerId: "b", role: "server", now: h.now });
    for (let round = 0; round < 8; round++) h.reportAll();
    const coverage = h.effects.flatMap((e) => (e.type === "epoch-finished" ? [e.coverage] : []));
    expect(coverage.length).toBeGreaterThanOrEqual(1);
    for (const epoch of coverage) expect(epoch).toMatchObject({ usedOnce: 64, usedTwice: 0, unused: 0 });
  });

  it("a role change for a member that left, or to the role it has, changes nothing", () => {
    const h = Harness.create({ minWorkers: 1 });
    h.join("a");
    h.apply({ type: "set-role", peerId: "gone", role: "server", now: h.now });
    h.apply({ type: "set-role", peerId: "a", role: "trainer", now: h.now });
    expect(h.effects.some((e) => e.type === "role-changed")).toBe(false);
    expect(h.logs("role")).toEqual([]);
  });

  it("a member that leaves while its move is deferred is forgotten with it", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    expect(h.member("b")?.state).toBe("training");
    h.apply({ type: "set-role", peerId: "b", role: "server", now: h.now });
    h.apply({ type: "leave", peerId: "b", reason: "closed", now: h.now });
    h.reportAll();
    expect(h.effects.some((e) => e.type === "role-changed")).toBe(false);
  });
});
