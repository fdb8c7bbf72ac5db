import { describe, expect, it } from "vitest";
import { disputeBackoffMs, separateAccused } from "../src/index.ts";
import { CONFIG, Harness, HASH } from "./sim.ts";

const strikes = (h: Harness, peer: string): number | undefined => h.member(peer)?.strikes;
const sent = (h: Harness, type: string): number => h.effects.filter((e) => e.type === "send" && e.message.type === type).length;

describe("claims are checked against what the coordinator knows", () => {
  it("a result claiming more samples than its lease aborts the round and strikes the claimant", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    const round = h.coordinator.state.current!;
    h.report("a", HASH(1), 1e6);
    expect(h.lastTo("b", "abort")!.reason).toMatch(/a reported 1000000 samples for a lease of \d+/);
    expect(strikes(h, "a")).toBe(1);
    expect(strikes(h, "b")).toBe(0);
    // The samples go back: the redo leases the same batch.
    const redo = h.coordinator.state.current!;
    expect([...redo.leases.values()].flat().sort()).toEqual([...round.leases.values()].flat().sort());
  });

  it("speed comes from the time the coordinator measured, not from the reported timings", () => {
    const h = Harness.create({ minWorkers: 2, maxRounds: 5 });
    ["fast", "slow"].forEach((p) => h.join(p));
    const round = h.coordinator.state.current!;
    h.apply({ type: "phase", peerId: "fast", attempt: round.attempt, phase: "reducing", now: h.now + 100 });
    h.apply({ type: "phase", peerId: "slow", attempt: round.attempt, phase: "reducing", now: h.now + 400 });
    h.now += 500;
    // Both claim they computed in 1 ms; the coordinator saw 100 ms against 400 ms.
    h.reportAll();
    // Round 2's leases went out ahead with round 1, before anyone was measured: the split follows
    // the measurement from round 3 on (one round of lag is the price of the overlap).
    h.reportAll();
    const later = h.coordinator.state.current!;
    expect(later.round).toBe(3);
    expect(later.leases.get("fast")!.length).toBeGreaterThan(2 * later.leases.get("slow")!.length);
  });

  it("a ready at round 0 with any hash but the server's is answered with sync", () => {
    const h = Harness.create();
    h.apply({ type: "join", peerId: "x", backend: "cpu", now: 0 });
    h.apply({ type: "ready", peerId: "x", round: 0, hash: "f".repeat(64), now: 0 });
    expect(h.coordinator.state.current).toBeUndefined();
    expect(h.lastTo("x", "sync")).toEqual({ type: "sync", round: 0 });
    h.apply({ type: "ready", peerId: "x", round: 0, hash: CONFIG.initialHash, now: 0 });
    expect(h.coordinator.state.current!.members).toEqual(["x"]);
  });
});

describe("commits that cannot be forged", () => {
  it("a plan of one commits only once the server checked the member's uploaded state", () => {
    const h = Harness.create();
    h.join("solo");
    h.report("solo", HASH(1));
    expect(h.coordinator.state.committedRound).toBe(0);
    expect(h.coordinator.uploadSlots("solo")).toEqual([{ kind: "pending", round: 1, attempt: h.coordinator.state.current!.attempt }]);
    h.verify("solo", HASH(1));
    expect(h.coordinator.state.committedRound).toBe(1);
    expect(h.lastTo("solo", "commit")!.hash).toBe(HASH(1));
  });

  it("a plan of one whose state fails the server's check is aborted and its member struck", () => {
    const h = Harness.create();
    h.join("solo");
    h.verify("solo", HASH(1), "weights[3] is NaN");
    h.report("solo", HASH(1));
    expect(h.coordinator.state.committedRound).toBe(0);
    expect(h.effects.some((e) => e.type === "log" && /failed the server's check: weights\[3\] is NaN/.test(e.text))).toBe(true);
    expect(strikes(h, "solo")).toBe(1);
  });

  it("a plan of one that never gets its state checked is aborted at the deadline, blaming its uploader", () => {
    const h = Harness.create();
    h.join("solo");
    h.report("solo", HASH(1));
    h.apply({ type: "tick", now: h.now + CONFIG.roundDeadlineMs + 1 });
    expect(h.lastTo("solo", "abort")!.reason).toMatch(/no checked state from solo/);
    expect(strikes(h, "solo")).toBe(1);
  });

  it("with three or more members the majority hash commits; the dissenter is struck, told to drop its update and re-sync", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const round = h.coordinator.state.current!;
    h.report("a", HASH(1));
    h.report("b", HASH(77));
    h.report("c", HASH(1));
    expect(h.coordinator.state.committedRound).toBe(1);
    expect(h.coordinator.state.committedHash).toBe(HASH(1));
    expect(h.lastTo("b", "abort")).toMatchObject({ attempt: round.attempt, reason: expect.stringMatching(/disagrees with the majority/) });
    expect(h.lastTo("b", "commit")).toBeUndefined();
    expect(h.lastTo("b", "sync")).toEqual({ type: "sync", round: 1 });
    expect(strikes(h, "b")).toBe(1);
    expect(strikes(h, "a")).toBe(0);
  });

  it("a member that always reports a wrong hash among three is evicted after maxStrikes rounds", () => {
    const h = Harness.create({ minWorkers: 3, maxRounds: 20 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    for (let k = 0; k < 3; k++) {
      const round = h.coordinator.state.current!;
      for (const peer of round.members) h.report(peer, peer === "b" ? HASH(999 + k) : HASH(h.coordinator.state.committedRound + 1));
      if (h.member("b") !== undefined) h.apply({ type: "ready", peerId: "b", round: h.coordinator.state.committedRound, hash: h.coordinator.state.committedHash, now: h.now });
    }
    expect(h.member("b")).toBeUndefined();
    expect(h.coordinator.state.committedRound).toBe(3);
    expect(h.effects).toContainEqual({ type: "disconnect", peerId: "b", reason: expect.stringMatching(/evicted after 3 strikes/) });
  });

  it("two members that disagree are aborted without blame, and repeated disputes back off", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    for (let k = 1; k <= 3; k++) {
      h.report("a", HASH(1));
      h.report("b", HASH(2));
      if (k < 2) expect(h.coordinator.state.current).toBeDefined();
      else {
        expect(h.coordinator.state.current).toBeUndefined();
        h.apply({ type: "tick", now: h.now + disputeBackoffMs(k) });
      }
    }
    expect(strikes(h, "a")).toBe(0);
    expect(strikes(h, "b")).toBe(0);
    expect(disputeBackoffMs(30)).toBe(10_000);
  });
});

describe("accusations need a second witness", () => {
  it("one member naming another aborts the round but strikes nobody, until its window ends unconfirmed: then the accuser is struck", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const round = h.coordinator.state.current!;
    h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: "bad-frame", suspect: "b", message: "lies", now: h.now });
    expect(h.lastTo("c", "abort")).toBeDefined();
    expect(strikes(h, "b")).toBe(0);
    expect(h.member("b")!.state).not.toBe("joining");
    h.apply({ type: "tick", now: h.now + CONFIG.accusationWindowMs + 2 });
    expect(strikes(h, "a")).toBe(1);
    expect(strikes(h, "b")).toBe(0);
  });

  it("an abort lowers the speed estimate of a member still computing to lease / time so far; its accuser, backed by the server, is not struck", () => {
    const h = Harness.create({ minWorkers: 3, batchSize: 30, trainCount: 300 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    // A first round measures everyone's speed (b's as 10 samples a second).
    const first = h.coordinator.state.current!;
    for (const peer of ["a", "b", "c"]) h.apply({ type: "phase", peerId: peer, attempt: first.attempt, phase: "reducing", now: h.now + (peer === "b" ? first.leases.get("b")!.length * 100 : 10) });
    h.reportAll();
    const round = h.coordinator.state.current!;
    // a and c entered the all-reduce; b never said `phase: reducing` and a timed out waiting for it.
    for (const peer of ["a", "c"]) h.apply({ type: "phase", peerId: peer, attempt: round.attempt, phase: "reducing", now: h.now + 100 });
    h.now += 30_000;
    h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: "timeout", suspect: "b", message: "nothing from b", now: h.now });
    // b has not finished in 30 s: it computes slower than its lease / 30 s, whatever it did before.
    expect(h.member("b")!.samplesPerSecond).toBeCloseTo(round.leases.get("b")!.length / 30, 3);
    // The server never heard b enter the all-reduce: it is the second witness. A slow volunteer is no cheater.
    expect(h.effects.filter((e) => e.type === "log" && e.kind === "straggler").map((e) => (e as { text: string }).text)).toEqual(["a timed out waiting for b, which was still computing: nobody struck"]);
    h.apply({ type: "tick", now: h.now + CONFIG.accusationWindowMs + 2 });
    expect(["a", "b", "c"].map((p) => strikes(h, p))).toEqual([0, 0, 0]);
  });

  it("a timeout the server cannot back is a lone accusation: against a member in the all-reduce, or sent too soon after the accuser entered it", () => {
    for (const [suspectReducing, waitedMs] of [[true, 30_000], [false, 1_000]] as const) {
      const h = Harness.create({ minWorkers: 3 });
      ["a", "b", "c"].forEach((p) => h.join(p));
      const round = h.coordinator.state.current!;
      for (const peer of suspectReducing ? ["a", "b", "c"] : ["a", "c"]) h.apply({ type: "phase", peerId: peer, attempt: round.attempt, phase: "reducing", now: h.now });
      h.now += waitedMs;
      h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: "timeout", suspect: "b", message: "nothing from b", now: h.now });
      h.apply({ type: "tick", now: h.now + CONFIG.accusationWindowMs + 2 });
      expect(["a", "b", "c"].map((p) => strikes(h, p))).toEqual([1, 0, 0]);
    }
  });

  it("relayed aborts are hearsay and never accuse", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const round = h.coordinator.state.current!;
    h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: "aborted", suspect: "b", message: "relayed", now: h.now });
    h.apply({ type: "failed", peerId: "c", attempt: round.attempt, code: "aborted", suspect: "b", message: "relayed", now: h.now });
    h.apply({ type: "tick", now: h.now + CONFIG.accusationWindowMs + 2 });
    expect(["a", "b", "c"].map((p) => strikes(h, p))).toEqual([0, 0, 0]);
  });

  it("a suspect whose connection closes confirms its accuser", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const round = h.coordinator.state.current!;
    h.apply({ type: "failed", peerId: "c", attempt: round.attempt, code: "peer-gone", suspect: "b", message: "link closed", now: h.now });
    h.apply({ type: "leave", peerId: "b", reason: "tab closed", now: h.now + 10 });
    h.apply({ type: "tick", now: h.now + CONFIG.accusationWindowMs + 20 });
    expect(strikes(h, "c")).toBe(0);
  });

  it("the next ring gives an accused member a different right neighbour than its accuser", () => {
    expect(separateAccused(["a", "b", "c", "d"], (s) => (s === "b" ? "c" : undefined))).toEqual(["b", "a", "c", "d"]);
    expect(separateAccused(["a", "b"], (s) => (s === "a" ? "b" : undefined))).toEqual(["a", "b"]);
  });
});

describe("repeated aborts", () => {
  it("a member whose own contribution its all-reducer refuses (bad-input) is struck each time, and evicted at maxStrikes", () => {
    const h = Harness.create({ minWorkers: 3, maxRounds: 20 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    for (let k = 1; k <= 3; k++) {
      const round = h.coordinator.state.current!;
      h.apply({ type: "failed", peerId: "c", attempt: round.attempt, code: "bad-input", suspect: "c", message: "own gradient has non-finite value NaN at element 0", now: (h.now += 1) });
      expect(strikes(h, "c") ?? "evicted").toBe(k < 3 ? k : "evicted");
      h.now += CONFIG.replanDelayMs + 1;
      h.apply({ type: "tick", now: h.now });
    }
    expect(h.logs("evicted").at(-1)).toMatch(/c evicted after 3 strikes; last: its own contribution was refused/);
    expect([strikes(h, "a"), strikes(h, "b")]).toEqual([0, 0]);
  });
});

describe("failures naming nobody", () => {
  /** `a` says its all-reduce failed at every attempt it is in, naming nobody it could be judged against. */
  function abuse(report: { code: "timeout" | "closed" | "aborted"; suspect: string | undefined }): Harness {
    const h = Harness.create({ minWorkers: 3, maxRounds: 10 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    for (let k = 0; k < 100 && h.coordinator.state.status !== "done"; k++) {
      // Anyone sent to sync comes back ready, a included: it keeps at it.
      const { committedRound, committedHash } = h.coordinator.state;
      for (const m of h.coordinator.state.members) if (m.state !== "training" && m.holds !== committedRound) h.apply({ type: "ready", peerId: m.peerId, round: committedRound, hash: committedHash, now: h.now });
      const round = h.coordinator.state.current;
      if (round === undefined) {
        h.now += CONFIG.roundDeadlineMs;
        h.apply({ type: "tick", now: h.now });
        continue;
      }
      if (round.members.includes("a")) {
        h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: report.code, suspect: report.suspect, message: "failed, it says", now: (h.now += 1) });
        continue; // aborted: the next attempt is open
      }
      h.reportAll();
      h.apply({ type: "state-stored", round: h.coordinator.state.committedRound, now: h.now });
    }
    return h;
  }

  it.each([
    { code: "timeout", suspect: undefined },
    { code: "timeout", suspect: "a" },
    { code: "timeout", suspect: "not-a-member" },
    { code: "closed", suspect: "b" },
    { code: "aborted", suspect: "b" },
  ] as const)("one member reporting $code (suspect $suspect) at every attempt is evicted, and the job finishes", (report) => {
    // Before, every such report aborted the attempt and nothing weighed against the reporter: 0 commits in 50 attempts.
    const h = abuse(report);
    expect(h.coordinator.state).toMatchObject({ status: "done", committedRound: 10 });
    expect(h.member("a")).toBeUndefined();
    expect(h.logs("evicted").join("\n")).toMatch(/a evicted after 3 strikes; last: failed \(\w+\) naming nobody again within 10 rounds/);
    // The first was free; the three after it struck.
    expect(h.logs("aborted").filter((line) => line.includes("a failed")).length).toBe(4);
  });

  it("an honest member's rare failure naming nobody aborts at once without a strike, once per 10 rounds", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    const fail = (): void => {
      const round = h.coordinator.state.current!;
      h.apply({ type: "failed", peerId: "a", attempt: round.attempt, code: "timeout", suspect: undefined, message: "round exceeded roundTimeoutMs", now: (h.now += 1) });
      expect(h.lastTo("b", "abort")).toMatchObject({ attempt: round.attempt });
    };
    fail();
    expect(h.member("a")?.strikes).toBe(0);
    fail(); // again within 10 rounds: still aborts (it gave up), and strikes
    expect(h.member("a")?.strikes).toBe(1);
    for (let k = 0; k < 10; k++) {
      h.reportAll();
      h.apply({ type: "state-stored", round: h.coordinator.state.committedRound, now: h.now });
    }
    const before = h.member("a")!.strikes; // the strike may have decayed meanwhile
    fail(); // 10 rounds later: free again
    expect(h.member("a")?.strikes).toBe(before);
  });
});

describe("strikes", () => {
  it("one strike is forgiven for every strikeDecayRounds committed rounds", () => {
    const h = Harness.create({ minWorkers: 2, strikeDecayRounds: 3, maxRounds: 50 });
    ["a", "b"].forEach((p) => h.join(p));
    h.report("a", HASH(1), 999);
    expect(strikes(h, "a")).toBe(1);
    for (let k = 0; k < 2; k++) h.reportAll();
    expect(strikes(h, "a")).toBe(1);
    h.reportAll();
    expect(strikes(h, "a")).toBe(0);
  });
});

describe("the committed state reaches the server", () => {
  it("when the uploader never delivers, another holder is asked; the one asked may upload that round only", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll();
    // (Round 2 is open, uploaded by "b": "a" still owes round 1's. Only committed slots matter here.)
    const committedSlots = (peer: string) => h.coordinator.uploadSlots(peer).filter((slot) => slot.kind === "committed");
    expect(h.coordinator.uploadSlots("a")).toContainEqual({ kind: "committed", round: 1, hash: HASH(1) });
    expect(committedSlots("b")).toEqual([]);
    h.apply({ type: "tick", now: h.now + CONFIG.stateUploadTimeoutMs + 1 });
    expect(h.lastTo("b", "upload")).toEqual({ type: "upload", round: 1 });
    expect(committedSlots("b")).toEqual([{ kind: "committed", round: 1, hash: HASH(1) }]);
    h.apply({ type: "state-stored", round: 1, now: h.now });
    expect(committedSlots("b")).toEqual([]);
  });

  it("an upload that fails the check strikes its author and asks another; the committed bits failing it end the job", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll();
    h.apply({ type: "state-checked", peerId: "a", round: 1, attempt: undefined, hash: HASH(5), problem: "hash mismatch", now: h.now });
    expect(strikes(h, "a")).toBe(1);
    expect(h.lastTo("b", "upload")).toEqual({ type: "upload", round: 1 });
    h.apply({ type: "state-checked", peerId: "b", round: 1, attempt: undefined, hash: HASH(1), problem: "weights[0] is Infinity", now: h.now });
    expect(h.coordinator.state.status).toBe("done");
    expect(h.lastTo("a", "stop")!.reason).toMatch(/fails the server's check/);
  });
});

describe("no storms", () => {
  it("a thousand members leaving at once cost one abort and one re-plan, not one per departure", () => {
    const h = Harness.create({ minWorkers: 1000, replanDelayMs: 100, batchSize: 2000, trainCount: 5000 });
    for (let k = 0; k < 1000; k++) h.join(`w${k}`);
    expect(h.coordinator.state.current!.members.length).toBe(1000);
    const roundsBefore = sent(h, "round");
    const before = h.effects.length;
    for (let k = 0; k < 990; k++) h.apply({ type: "leave", peerId: `w${k}`, reason: "gone", now: h.now + 1 });
    expect(h.effects.filter((e) => e.type === "log" && e.kind === "aborted").length).toBe(1);
    expect(sent(h, "round")).toBe(roundsBefore);
    // One abort to each of the 1000 members, plus O(1) per departure.
    expect(h.effects.length - before).toBeLessThan(1000 + 990 * 3);
    expect(h.coordinator.nextWakeAt()).toBe(h.now + 1 + 100);
    h.apply({ type: "tick", now: h.now + 1 + 100 });
    expect(h.coordinator.state.current!.members.length).toBe(10);
  });
});
