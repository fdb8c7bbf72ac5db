import { describe, expect, it } from "vitest";
import { Harness, HASH, TIMINGS } from "./sim.ts";

const sorted = (values: readonly string[]): string[] => [...values].sort();

describe("leases kept across an abort (retained.ts)", () => {
  it("the members that stay keep their leases for the retry; a departed member's lease goes back to the queue, and the epoch still uses every sample once", () => {
    const h = Harness.create({ minWorkers: 3, batchSize: 12, trainCount: 24 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const first = h.coordinator.state.current!;
    const leaseOf = (peer: string): readonly number[] => first.leases.get(peer)!;
    h.now = 5;
    h.apply({ type: "leave", peerId: "b", reason: "tab closed", now: h.now });
    const retry = h.coordinator.state.current!;
    expect(retry.attempt).toBeGreaterThan(first.attempt);
    expect(retry.members).toEqual(["a", "c"]);
    // The same leases, so a and c reuse what they computed; b's samples wait in the queue.
    expect(retry.leases.get("a")).toEqual(leaseOf("a"));
    expect(retry.leases.get("c")).toEqual(leaseOf("c"));
    expect(h.lastTo("a", "round")!.lease).toEqual([...leaseOf("a")]);
    h.reportAll();
    expect(h.coordinator.state.committedRound).toBe(1);
    // The next round starts with b's lease, at the front of the queue.
    const next = [...h.coordinator.state.current!.leases.values()].flat();
    for (const sample of leaseOf("b")) expect(next).toContain(sample);
    for (let round = 0; round < 4 && h.coordinator.state.current !== undefined; round++) h.reportAll();
    const coverage = Array.from(h.coordinator.coverage());
    expect(coverage.every((uses) => uses <= 1)).toBe(true);
  });

  it("a joiner sits the retry out (it has nothing to compute); the kept leases are the retry's whole batch; it joins the round after", () => {
    const h = Harness.create({ minWorkers: 2, batchSize: 8, trainCount: 32, replanDelayMs: 1_000 });
    ["a", "b"].forEach((p) => h.join(p));
    const first = h.coordinator.state.current!;
    h.apply({ type: "failed", peerId: "a", attempt: first.attempt, code: "timeout", suspect: undefined, message: "slow link", now: h.now });
    // c joins while the retry waits out the re-plan delay.
    h.join("c");
    expect(h.coordinator.state.current).toBeUndefined();
    h.now += 1_000;
    h.apply({ type: "tick", now: h.now });
    const retry = h.coordinator.state.current!;
    expect(sorted(retry.members)).toEqual(["a", "b"]);
    expect(retry.leases.get("a")).toEqual(first.leases.get("a"));
    expect(retry.leases.get("b")).toEqual(first.leases.get("b"));
    expect(h.lastTo("c", "round")).toBeUndefined();
    // The retry commits without c; c is one round behind, syncs, and the next round has all three, each with samples.
    h.reportAll();
    expect(h.lastTo("c", "sync")).toMatchObject({ round: 1 });
    h.apply({ type: "ready", peerId: "c", round: 1, hash: HASH(1), now: h.now });
    h.now += 1_000;
    h.apply({ type: "tick", now: h.now });
    const next = h.coordinator.state.current!;
    expect(sorted(next.members)).toEqual(["a", "b", "c"]);
    for (const peer of ["a", "b", "c"]) expect(next.leases.get(peer)?.length ?? 0).toBeGreaterThan(0);
  });

  it("a member asked to sync (knocked back) gives its kept lease back: it will compute afresh on the state it fetches", () => {
    const h = Harness.create({ minWorkers: 4, batchSize: 12, trainCount: 48, replanDelayMs: 1_000 });
    ["a", "b", "c", "d"].forEach((p) => h.join(p));
    const first = h.coordinator.state.current!;
    // Two witnesses name b: the attempt aborts and b is knocked back (sync) before the retry.
    h.apply({ type: "failed", peerId: "c", attempt: first.attempt, code: "timeout", suspect: "b", message: "silent", now: h.now });
    h.apply({ type: "failed", peerId: "a", attempt: first.attempt, code: "peer-gone", suspect: "b", message: "link closed", now: h.now });
    expect(h.lastTo("b", "sync")).toBeDefined();
    h.apply({ type: "ready", peerId: "b", round: 0, hash: HASH(0), now: h.now });
    h.now += 1_000;
    h.apply({ type: "tick", now: h.now });
    const retry = h.coordinator.state.current!;
    expect(retry.leases.get("a")).toEqual(first.leases.get("a"));
    if (retry.members.includes("b")) expect(retry.leases.get("b") ?? []).toEqual([]);
    // b's samples are back in the queue, not in anyone's lease now.
    const now = [...retry.leases.values()].flat();
    for (const sample of first.leases.get("b")!) expect(now).not.toContain(sample);
  });

  it("speed is measured on a kept lease's compute, not on the abort's wait", () => {
    const h = Harness.create({ minWorkers: 2, batchSize: 100, trainCount: 1000 });
    ["a", "b"].forEach((p) => h.join(p));
    const first = h.coordinator.state.current!;
    // a computed its lease in 1 s, b in 2 s; the attempt failed at 2.5 s and was replanned at once.
    h.apply({ type: "phase", peerId: "a", attempt: first.attempt, phase: "reducing", now: h.now + 1_000 });
    h.apply({ type: "phase", peerId: "b", attempt: first.attempt, phase: "reducing", now: h.now + 2_000 });
    h.now += 2_500;
    h.apply({ type: "failed", peerId: "a", attempt: first.attempt, code: "timeout", suspect: undefined, message: "slow link", now: h.now });
    const retry = h.coordinator.state.current!;
    for (const peer of ["a", "b"]) {
      h.apply({ type: "phase", peerId: peer, attempt: retry.attempt, phase: "reducing", now: h.now + 5 });
      h.apply({ type: "result", peerId: peer, attempt: retry.attempt, hash: HASH(1), samples: retry.leases.get(peer)!.length, loss: 1, timings: TIMINGS, bytesSent: 0, bytesReceived: 0, now: h.now + 10 });
    }
    expect(h.coordinator.state.committedRound).toBe(1);
    const speed = (peer: string): number => h.member(peer)!.samplesPerSecond!;
    expect(speed("a")).toBeCloseTo(first.leases.get("a")!.length / 1.005, 0);
    expect(speed("b")).toBeCloseTo(first.leases.get("b")!.length / 2.005, 0);
  });
});
