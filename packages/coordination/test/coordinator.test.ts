import { describe, expect, it } from "vitest";
import { DEFAULT_OUTER_OPTIMIZER, roundSamples } from "@crowdtrain/protocol";
import { apportion, Coordinator, epochOrder, mulberry32, splitBatch } from "../src/index.ts";
import { CONFIG, Harness, HASH, TIMINGS } from "./sim.ts";

describe("leases and orders", () => {
  it("apportion sums to the total, follows the weights, gives everyone at least one", () => {
    expect(apportion(12, [1, 1, 1])).toEqual([4, 4, 4]);
    expect(apportion(10, [1, 1, 1])).toEqual([4, 3, 3]);
    expect(apportion(12, [3, 1])).toEqual([9, 3]);
    expect(apportion(5, [1000, 1, 1])).toEqual([3, 1, 1]);
    expect(apportion(2, [1, 1, 1])).toEqual([1, 1, 0]);
    expect(apportion(0, [1, 2])).toEqual([0, 0]);
  });
  it("splitBatch hands out contiguous, disjoint pieces; an unknown speed counts as the slowest known one", () => {
    const batch = [...Array(20).keys()];
    const leases = splitBatch(batch, ["a", "b", "c"], (p) => ({ a: 100, b: 300 })[p]);
    expect([...leases.values()].flat()).toEqual(batch);
    // c has no measurement: it counts as the slowest (100) of the known speeds.
    expect([...leases.values()].map((l) => l.length)).toEqual([5, 11, 4]);
    // Nobody measured: equal shares.
    expect([...splitBatch(batch, ["a", "b"], () => undefined).values()].map((l) => l.length)).toEqual([10, 10]);
  });
  it("an epoch order is a seeded permutation that changes with the epoch", () => {
    const a = epochOrder(50, 3, 0);
    expect([...a].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    expect(epochOrder(50, 3, 0)).toEqual(a);
    expect(epochOrder(50, 3, 1)).not.toEqual(a);
    expect(mulberry32(1)()).toBe(mulberry32(1)());
  });
});

describe("coordinator rounds", () => {
  it("waits for minWorkers, then opens a round with disjoint leases covering the batch", () => {
    const h = Harness.create({ minWorkers: 3 });
    h.join("a");
    h.join("b");
    expect(h.coordinator.state.current).toBeUndefined();
    h.join("c");
    const round = h.coordinator.state.current!;
    expect(round.members).toEqual(["a", "b", "c"]);
    const leased = ["a", "b", "c"].flatMap((p) => h.lastTo(p, "round")!.lease);
    expect(new Set(leased).size).toBe(CONFIG.batchSize);
    expect(h.lastTo("a", "round")!.upload).toBe(true);
    expect(h.lastTo("b", "round")!.upload).toBe(false);
  });

  it("commits when all hashes agree, then opens the next round from the committed state", () => {
    const h = Harness.create({ minWorkers: 2 });
    h.join("a");
    h.join("b");
    const first = h.coordinator.state.current!;
    h.reportAll();
    expect(h.coordinator.state.committedRound).toBe(1);
    expect(h.lastTo("b", "commit")).toMatchObject({ attempt: first.attempt, round: 1, hash: HASH(1) });
    const committed = h.effects.find((e) => e.type === "committed");
    expect(committed).toBeDefined();
    expect(h.coordinator.state.current!.round).toBe(2);
    expect(h.coordinator.state.current!.attempt).toBeGreaterThan(first.attempt);
  });

  it("a hash mismatch aborts: nothing is counted, the same samples are redone", () => {
    const h = Harness.create({ minWorkers: 2 });
    h.join("a");
    h.join("b");
    const first = h.coordinator.state.current!;
    const firstSamples = [...first.leases.values()].flat().sort((x, y) => x - y);
    h.apply({ type: "result", peerId: "a", attempt: first.attempt, hash: HASH(1), samples: 6, loss: 1, timings: TIMINGS, bytesSent: 0, bytesReceived: 0, now: 1 });
    h.apply({ type: "result", peerId: "b", attempt: first.attempt, hash: HASH(99), samples: 6, loss: 1, timings: TIMINGS, bytesSent: 0, bytesReceived: 0, now: 2 });
    expect(h.coordinator.state.committedRound).toBe(0);
    expect(h.lastTo("a", "abort")!.reason).toMatch(/disagree/);
    const redo = h.coordinator.state.current!;
    expect(redo.round).toBe(1);
    expect([...redo.leases.values()].flat().sort((x, y) => x - y)).toEqual(firstSamples);
    expect(Array.from(h.coordinator.coverage()).every((c) => c === 0)).toBe(true);
  });

  it("a member leaving mid-round aborts it; the survivors get the next ring at once", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    h.reportAll(undefined, ["c"]);
    h.apply({ type: "leave", peerId: "b", reason: "tab closed", now: 5 });
    expect(h.lastTo("a", "abort")!.reason).toMatch(/b left/);
    expect(h.coordinator.state.current!.members).toEqual(["a", "c"]);
  });

  it("a suspect named by two witnesses sits out until it is ready again, and is evicted after maxStrikes", () => {
    const h = Harness.create({ minWorkers: 4, maxStrikes: 2 });
    ["a", "b", "c", "d"].forEach((p) => h.join(p));
    const twoNameB = (): void => {
      const round = h.coordinator.state.current!;
      expect(round.members).toContain("b");
      h.apply({ type: "failed", peerId: "c", attempt: round.attempt, code: "timeout", suspect: "b", message: "silent", now: h.now });
      h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: "peer-gone", suspect: "b", message: "link closed", now: h.now });
    };
    twoNameB();
    // b is knocked back: the next ring leaves it out, and it is asked to fetch the committed state.
    expect(h.coordinator.state.current!.members).toEqual(["a", "c", "d"]);
    expect(h.lastTo("b", "sync")).toEqual({ type: "sync", round: 0 });
    // b restores and says ready at round 0, but round 1 is already running without it.
    h.apply({ type: "ready", peerId: "b", round: 0, hash: HASH(0), now: h.now });
    h.reportAll();
    expect(h.lastTo("b", "sync")).toEqual({ type: "sync", round: 1 });
    // The round after that waits for b (joinGraceMs), which comes back at the new committed round.
    expect(h.coordinator.state.current).toBeUndefined();
    h.apply({ type: "ready", peerId: "b", round: 1, hash: HASH(1), now: h.now });
    expect(h.coordinator.state.current!.members).toEqual(["a", "b", "c", "d"]);
    h.now += 10_000; // a second pair of accusations, outside the first one's window
    twoNameB();
    expect(h.coordinator.state.members.map((m) => m.peerId)).not.toContain("b");
    expect(h.lastTo("b", "stop")!.reason).toMatch(/evicted after 2 strikes/);
    expect(h.effects).toContainEqual({ type: "disconnect", peerId: "b", reason: expect.stringMatching(/evicted/) });
  });

  it("a member that does not come back within joinGraceMs does not hold the others", () => {
    const h = Harness.create();
    h.join("a");
    h.apply({ type: "join", peerId: "slow", backend: "cpu", now: h.now });
    h.reportAll();
    expect(h.coordinator.state.current).toBeUndefined();
    h.apply({ type: "tick", now: h.now + CONFIG.joinGraceMs + 1 });
    expect(h.coordinator.state.current!.members).toEqual(["a"]);
  });

  it("the deadline aborts a round and suspects the members that never reported", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll(undefined, ["b"]);
    h.apply({ type: "tick", now: CONFIG.roundDeadlineMs + 1 });
    expect(h.lastTo("a", "abort")!.reason).toMatch(/no report from b/);
    expect(h.coordinator.state.current!.members).toEqual(["a"]);
  });

  it("a ready message for an old round or the wrong hash is answered with sync", () => {
    const h = Harness.create();
    h.join("a");
    h.apply({ type: "join", peerId: "late", backend: "webgpu", now: 1 });
    h.reportAll();
    h.apply({ type: "ready", peerId: "late", round: 0, hash: HASH(0), now: 1 });
    expect(h.lastTo("late", "sync")).toEqual({ type: "sync", round: 1 });
    h.apply({ type: "ready", peerId: "late", round: 1, hash: HASH(42), now: 1 });
    expect(h.coordinator.state.members.find((m) => m.peerId === "late")!.state).toBe("joining");
    // The round after the commit waits for the joiner, which enters with the right state.
    expect(h.coordinator.state.current).toBeUndefined();
    h.apply({ type: "ready", peerId: "late", round: 1, hash: HASH(1), now: 1 });
    expect(h.coordinator.state.current!.members).toEqual(["a", "late"]);
  });

  it("stops after maxRounds and tells everyone once the final state is stored", () => {
    const h = Harness.create({ maxRounds: 2, minWorkers: 2 });
    h.join("a");
    h.join("b");
    h.reportAll();
    h.reportAll();
    expect(h.coordinator.state.status).toBe("done");
    expect(h.coordinator.state.current).toBeUndefined();
    // The members still hold round 2's state, which the server lacks: nobody stops yet.
    expect(h.lastTo("a", "stop")).toBeUndefined();
    h.apply({ type: "state-stored", round: 2, now: h.now });
    expect(h.lastTo("a", "stop")!.reason).toMatch(/2 rounds/);
    expect(h.lastTo("b", "stop")!.reason).toMatch(/2 rounds/);
  });

  it("a finished job whose final upload fails asks another holder, then stops everyone past a bounded wait", () => {
    const h = Harness.create({ maxRounds: 1, minWorkers: 2 });
    h.join("a");
    h.join("b");
    h.reportAll();
    expect(h.coordinator.state.status).toBe("done");
    const uploader = h.coordinator.uploadSlots("a").length > 0 ? "a" : "b";
    const other = uploader === "a" ? "b" : "a";
    h.apply({ type: "tick", now: h.now + CONFIG.stateUploadTimeoutMs + 1 });
    expect(h.lastTo(other, "upload")).toEqual({ type: "upload", round: 1 });
    expect(h.lastTo(other, "stop")).toBeUndefined();
    expect(h.coordinator.nextWakeAt()).toBe(h.now + 2 * CONFIG.stateUploadTimeoutMs);
    h.apply({ type: "tick", now: h.now + 2 * CONFIG.stateUploadTimeoutMs });
    expect(h.lastTo(uploader, "stop")!.reason).toMatch(/1 rounds/);
    expect(h.lastTo(other, "stop")!.reason).toMatch(/1 rounds/);
  });

  it("a finished job stops at once when nobody is left holding the final state", () => {
    const h = Harness.create({ maxRounds: 1, minWorkers: 2 });
    h.join("a");
    h.join("b");
    // c joins mid-round: it never holds round 1's state.
    h.apply({ type: "join", peerId: "c", backend: "cpu", now: h.now });
    h.reportAll();
    expect(h.coordinator.state.status).toBe("done");
    const uploader = h.coordinator.uploadSlots("a").length > 0 ? "a" : "b";
    const other = uploader === "a" ? "b" : "a";
    h.apply({ type: "leave", peerId: other, reason: "closed", now: h.now });
    expect(h.lastTo("c", "stop")).toBeUndefined();
    h.apply({ type: "leave", peerId: uploader, reason: "closed", now: h.now });
    expect(h.lastTo("c", "stop")!.reason).toMatch(/1 rounds/);
  });

  it("the state upload moves off a member whose upload never lands to one whose upload does", () => {
    const h = Harness.create({ minWorkers: 3, maxRounds: 10 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const uploaderOf = (): string => h.coordinator.state.current!.uploader;
    const rounds: string[] = [];
    for (let r = 1; r <= 5; r++) {
      const round = h.coordinator.state.current!;
      rounds.push(round.uploader);
      // The uploader reports first and uploads its pending state at once: "a" never does; the
      // uploads of "b" and "c" land 5 ms and 50 ms after their reports, before the others report.
      h.report(round.uploader, HASH(r));
      if (round.uploader !== "a") {
        h.now += round.uploader === "b" ? 5 : 50;
        h.verify(round.uploader, HASH(r));
      }
      for (const peer of round.members) if (peer !== round.uploader) h.report(peer, HASH(r));
      expect(h.coordinator.state.committedRound).toBe(r);
    }
    // Each member is tried once ("a" is passed over while its upload is still due, then ranks last), then the fastest keeps it.
    expect(rounds).toEqual(["a", "b", "c", "b", "b"]);
    expect(uploaderOf()).toBe("b");
  });

  it("a resumed snapshot keeps the operator's target", () => {
    const h = Harness.create({ maxRounds: 5 });
    h.join("a");
    h.apply({ type: "set-max-rounds", rounds: 3, now: 0 });
    h.reportAll();
    const resumed = new Coordinator({ ...CONFIG, maxRounds: 5 }, h.coordinator.snapshot());
    expect(resumed.state.maxRounds).toBe(3);
    h.apply({ type: "set-max-rounds", rounds: undefined, now: 0 });
    expect(new Coordinator({ ...CONFIG, maxRounds: 5 }, h.coordinator.snapshot()).state.maxRounds).toBeUndefined();
  });

  it("the operator can raise or lower the target number of rounds", () => {
    const h = Harness.create({ maxRounds: 2 });
    h.join("a");
    h.apply({ type: "set-max-rounds", rounds: 3, now: 0 });
    h.reportAll();
    h.reportAll();
    expect(h.coordinator.state.status).toBe("running");
    h.apply({ type: "state-stored", round: 2, now: 0 });
    h.apply({ type: "set-max-rounds", rounds: 2, now: 0 });
    expect(h.coordinator.state.status).toBe("done");
    expect(h.lastTo("a", "stop")!.reason).toMatch(/2 rounds/);
  });

  it("pause holds the next round, resume opens it", () => {
    const h = Harness.create();
    h.join("a");
    h.apply({ type: "pause", now: 0 });
    h.reportAll();
    expect(h.coordinator.state.current).toBeUndefined();
    h.apply({ type: "resume", now: 0 });
    expect(h.coordinator.state.current!.round).toBe(2);
  });
});

describe("no sample lost or doubled", () => {
  it("at an epoch's tail with fewer samples than members, only members with a sample take part", () => {
    const h = Harness.create({ trainCount: 10, batchSize: 4, minWorkers: 4 });
    ["a", "b", "c", "d"].forEach((p) => h.join(p));
    const sizes: number[][] = [];
    for (let round = 0; round < 3; round++) {
      const current = h.coordinator.state.current!;
      sizes.push(current.members.map((m) => current.leases.get(m)!.length));
      h.reportAll();
    }
    // 10 samples in batches of 4: 4, 4, then 2 for two members (not 1, 1, 0, 0).
    expect(sizes).toEqual([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1]]);
    expect(h.effects.filter((e) => e.type === "send" && e.message.type === "round" && e.message.lease.length === 0)).toEqual([]);
  });

  // DiLoCo leases innerSteps batches per round (the server configures batchSize = roundSamples(job)).
  it.each([1, 4])("over 3 epochs of random joins, leaves, failures and deadlines, every finished epoch used every sample exactly once (%i inner steps)", (steps) => {
    const random = mulberry32(2024 + steps);
    const algorithm = steps === 1 ? { kind: "sync" as const } : { kind: "diloco" as const, innerSteps: steps, outer: DEFAULT_OUTER_OPTIMIZER };
    const h = Harness.create({ trainCount: 97, batchSize: roundSamples({ batchSize: 10, algorithm }), maxEpochs: 3 });
    let nextPeer = 0;
    const alive = new Set<string>();
    const spawn = (): void => {
      const id = `p${nextPeer++}`;
      alive.add(id);
      h.join(id);
    };
    spawn();
    spawn();
    for (let step = 0; step < 5000 && h.coordinator.state.status !== "done"; step++) {
      h.now += 10;
      const dice = random();
      const round = h.coordinator.state.current;
      if (alive.size < 2 || dice < 0.03) spawn();
      else if (dice < 0.06) {
        const victim = [...alive][Math.floor(random() * alive.size)]!;
        alive.delete(victim);
        h.apply({ type: "leave", peerId: victim, reason: "chaos", now: h.now });
      } else if (round !== undefined && dice < 0.1) {
        h.apply({ type: "failed", peerId: round.members[0]!, attempt: round.attempt, code: "timeout", suspect: undefined, message: "chaos", now: h.now });
      } else if (round !== undefined && dice < 0.12) {
        h.apply({ type: "tick", now: h.now + CONFIG.roundDeadlineMs + 1 });
      } else if (round !== undefined) {
        h.reportAll();
      }
      // Peers that were knocked back to joining come back with the committed state.
      for (const m of h.coordinator.state.members) {
        if (m.state === "joining") h.apply({ type: "ready", peerId: m.peerId, round: h.coordinator.state.committedRound, hash: h.coordinator.state.committedHash, now: h.now });
      }
    }
    const epochs = h.effects.flatMap((e) => (e.type === "epoch-finished" ? [e.coverage] : []));
    expect(epochs.length).toBe(3);
    for (const c of epochs) expect(c).toMatchObject({ samples: 97, usedOnce: 97, usedTwice: 0, unused: 0 });
    expect(h.effects.some((e) => e.type === "log" && e.kind === "aborted")).toBe(true);
  });
});

describe("leases ahead (overlap)", () => {
  const roundTo = (h: Harness, peer: string) => h.lastTo(peer, "round")!;

  it("each round message carries the member's next lease, which becomes its lease when the round commits", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    const first = { a: roundTo(h, "a"), b: roundTo(h, "b") };
    expect(first.a.next!.length).toBeGreaterThan(0);
    // Disjoint from this round's leases and from each other.
    const all = [...first.a.lease, ...first.b.lease, ...first.a.next!, ...first.b.next!];
    expect(new Set(all).size).toBe(all.length);
    h.reportAll();
    expect(roundTo(h, "a").lease).toEqual(first.a.next);
    expect(roundTo(h, "b").lease).toEqual(first.b.next);
    // With config.leaseAhead false, no round carries one.
    const off = Harness.create({ minWorkers: 1, leaseAhead: false });
    off.join("a");
    expect(roundTo(off, "a").next).toBeUndefined();
  });

  it("an abort gives the next leases back with the round's; a joiner gets a fresh split instead of being left out", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    const before = [roundTo(h, "a"), roundTo(h, "b")].flatMap((m) => [...m.lease, ...m.next!]).sort((x, y) => x - y);
    const round = h.coordinator.state.current!;
    h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: "timeout", suspect: undefined, message: "x", now: h.now });
    const redo = [roundTo(h, "a"), roundTo(h, "b")];
    expect(redo[0]!.attempt).toBeGreaterThan(round.attempt);
    expect(redo.flatMap((m) => [...m.lease, ...m.next!]).sort((x, y) => x - y)).toEqual(before);
    h.reportAll();
    h.join("c");
    h.reportAll();
    // c joined at round 1 while round 2 ran: it fetches round 2's state, then the next round opens.
    h.apply({ type: "ready", peerId: "c", round: h.coordinator.state.committedRound, hash: h.coordinator.state.committedHash, now: h.now });
    const current = h.coordinator.state.current!;
    expect(current.members).toContain("c");
    expect(current.leases.get("c")!.length).toBeGreaterThan(0);
  });

  it("a snapshot counts the leases ahead as in flight: restored, nothing is lost", () => {
    const h = Harness.create({ minWorkers: 2, trainCount: 50, batchSize: 10, maxEpochs: 1 });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll();
    // Round 2 is open with round 3's leases out ahead; round 1 is committed.
    const snapshot = JSON.parse(JSON.stringify(h.coordinator.snapshot()));
    const restored = new Harness(new Coordinator({ ...CONFIG, trainCount: 50, batchSize: 10, maxEpochs: 1, minWorkers: 2 }, snapshot));
    ["a", "b"].forEach((p) => restored.join(p));
    for (let step = 0; step < 100 && restored.coordinator.state.status !== "done"; step++) {
      // Members knocked back to fetch the committed state come back with it.
      for (const m of restored.coordinator.state.members) {
        if (m.state === "joining") restored.apply({ type: "ready", peerId: m.peerId, round: restored.coordinator.state.committedRound, hash: restored.coordinator.state.committedHash, now: restored.now });
      }
      if (restored.coordinator.state.current !== undefined) restored.reportAll();
    }
    const epochs = restored.effects.flatMap((e) => (e.type === "epoch-finished" ? [e.coverage] : []));
    expect(epochs).toEqual([expect.objectContaining({ samples: 50, usedOnce: 50, usedTwice: 0, unused: 0 })]);
  });
});

describe("snapshots", () => {
  it("restoring a snapshot taken mid-round puts the in-flight leases back in the queue", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll();
    const inFlight = [...h.coordinator.state.current!.leases.values()].flat();
    const snapshot = JSON.parse(JSON.stringify(h.coordinator.snapshot()));
    const restored = new Coordinator({ ...CONFIG }, snapshot);
    expect(restored.state.committedRound).toBe(1);
    expect(restored.snapshot().queue.slice(0, inFlight.length)).toEqual(inFlight);
    expect(Array.from(restored.coverage())).toEqual(Array.from(h.coordinator.coverage()));
  });
  it("after a restore, attempt ids continue from the snapshot, whatever a worker claims", () => {
    const h = Harness.create();
    h.join("a");
    h.reportAll();
    const snapshot = JSON.parse(JSON.stringify(h.coordinator.snapshot()));
    const restored = new Harness(new Coordinator({ ...CONFIG }, snapshot));
    restored.join("b");
    expect(restored.coordinator.state.current!.attempt).toBe(snapshot.nextAttempt);
  });

  it("refuses a snapshot of another dataset size", () => {
    const snap = Harness.create().coordinator.snapshot();
    expect(() => new Coordinator({ ...CONFIG, trainCount: 5 }, snap)).toThrow(/samples/);
  });
});
