import { describe, expect, it } from "vitest";
import { outliers, type RoundReport } from "../src/index.ts";
import { Harness, HASH, TIMINGS } from "./sim.ts";

const report = (clipped: string[] = []): RoundReport => ({ hash: HASH(1), samples: 1, loss: 1, timings: TIMINGS, bytesSent: 1, bytesReceived: 1, clipped });

describe("outliers", () => {
  it("names a member only when a strict majority of the owners clipped it, never counting an owner clipping itself", () => {
    const four = new Map([
      ["a", report(["d"])],
      ["b", report(["d"])],
      ["c", report(["d", "a"])],
      ["d", report(["a", "b", "d"])],
    ]);
    // d: clipped by a, b, c (3 of 4); a: by c and d (2 of 4, not a majority); d's own say about itself is ignored.
    expect([...outliers(four)]).toEqual([["d", 3]]);
    expect(outliers(new Map([["a", report(["b"])], ["b", report(["a"])]])).size).toBe(0);
    // Three members: even two owners naming the third strike nobody (too few to tell an outlier).
    expect(outliers(new Map([["a", report(["c"])], ["b", report(["c"])], ["c", report()]])).size).toBe(0);
    expect(outliers(new Map([["a", report()]])).size).toBe(0);
  });
});

describe("robust aggregation in the coordinator", () => {
  it("a robust job runs direct plans; a member that most owners clip is struck, the others are not", () => {
    const h = Harness.create({ minWorkers: 4, aggregation: "centered-clip", maxRounds: 10 });
    ["a", "b", "c", "d"].forEach((p) => h.join(p));
    const round = h.coordinator.state.current!;
    expect(round.plan).toEqual({ kind: "direct", members: ["a", "b", "c", "d"], aggregation: "centered-clip" });
    expect(h.lastTo("a", "round")?.plan.kind).toBe("direct");
    for (const [peer, clipped] of [["a", ["d"]], ["b", ["d"]], ["c", ["d"]], ["d", ["a"]]] as const) {
      h.now += 1;
      const leased = round.leases.get(peer)!.length;
      h.apply({ type: "result", peerId: peer, attempt: round.attempt, hash: HASH(1), samples: leased, loss: 1, timings: TIMINGS, bytesSent: 1, bytesReceived: 1, clipped: [...clipped], now: h.now });
    }
    expect(h.coordinator.state.committedRound).toBe(1);
    expect(h.member("d")?.strikes).toBe(1);
    expect(["a", "b", "c"].map((p) => h.member(p)?.strikes)).toEqual([0, 0, 0]);
    expect(h.logs("strike").at(-1)).toMatch(/d struck.*clipped as an outlier by 3 of 4 shard owners in round 1/);
  });

  it("a mean job keeps the ring", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    expect(h.coordinator.state.current?.plan).toEqual({ kind: "ring", members: ["a", "b"] });
  });
});
