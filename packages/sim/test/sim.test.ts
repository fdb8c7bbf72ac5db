import { describe, expect, it } from "vitest";
import { createAllReducer, type AllReduceError } from "@crowdtrain/allreduce";
import { FRAME_HEADER_BYTES } from "@crowdtrain/protocol";
import { DEFAULT_POPULATION, homogeneous, SimNetwork, simulateAllReduce, simulateTraining, Swarm, VirtualClock, type SwarmConfig } from "../src/index.ts";

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe("VirtualClock", () => {
  it("runs timers in time order (ties in the order set), skips cleared ones, and stops at `until`", async () => {
    const clock = new VirtualClock(settle);
    const seen: string[] = [];
    clock.setTimeout(() => seen.push("b@10"), 10);
    clock.setTimeout(() => seen.push("a@5"), 5);
    clock.setTimeout(() => seen.push("c@10"), 10);
    const cleared = clock.setTimeout(() => seen.push("never"), 7);
    clock.clearTimeout(cleared);
    clock.setTimeout(() => {
      seen.push("d@20");
      clock.setTimeout(() => seen.push("e@20"), 0);
    }, 20);
    clock.setTimeout(() => seen.push("late@100"), 100);
    expect(await clock.run(() => false, 50)).toBe("until");
    expect(seen).toEqual(["a@5", "b@10", "c@10", "d@20", "e@20"]);
    expect(clock.now()).toBe(50);
    expect(await clock.run(() => false, 1_000)).toBe("idle");
    expect(seen.at(-1)).toBe("late@100");
  });

  it("lets a callback's promise jobs run before the next timer", async () => {
    const clock = new VirtualClock(settle);
    const seen: string[] = [];
    clock.setTimeout(() => void Promise.resolve().then(() => Promise.resolve()).then(() => seen.push("job")), 1);
    clock.setTimeout(() => seen.push("next"), 1);
    await clock.run(() => false, 10);
    expect(seen).toEqual(["job", "next"]);
  });
});

describe("SimNetwork", () => {
  it("charges the sender's uplink, the path's latency and the receiver's downlink; send resolves when the frame has left", async () => {
    const clock = new VirtualClock(settle);
    const network = new SimNetwork(clock, { payloadScale: 10, goneAfterMs: 1_000 });
    const a = network.add("a", { upBps: 8e6, downBps: 32e6, rttMs: 20 });
    const b = network.add("b", { upBps: 8e6, downBps: 32e6, rttMs: 40 });
    const arrivals: number[] = [];
    b.onFrame(() => arrivals.push(clock.now()));
    const frame = new Uint8Array(FRAME_HEADER_BYTES + 1_000);
    const wire = FRAME_HEADER_BYTES + 10_000;
    const sent: number[] = [];
    void a.send("b", frame).then(() => sent.push(clock.now()));
    void a.send("b", frame).then(() => sent.push(clock.now()));
    await clock.run(() => arrivals.length === 2, 10_000);
    const up = (wire * 8 * 1000) / 8e6;
    const down = (wire * 8 * 1000) / 32e6;
    expect(sent[0]).toBeCloseTo(up, 9);
    expect(sent[1]).toBeCloseTo(2 * up, 9); // queued behind the first on the uplink
    expect(arrivals[0]).toBeCloseTo(up + 30 + down, 9); // one-way = (20 + 40) / 2
    expect(arrivals[1]).toBeCloseTo(2 * up + 30 + down, 9);
    expect(network.bytesSent("a")).toBe(2 * wire);
  });

  it("a dead peer's frames vanish, its sends fail, and the others hear of it goneAfterMs later", async () => {
    const clock = new VirtualClock(settle);
    const network = new SimNetwork(clock, { payloadScale: 1, goneAfterMs: 500 });
    const a = network.add("a", { upBps: 1e6, downBps: 1e6, rttMs: 10 });
    const b = network.add("b", { upBps: 1e6, downBps: 1e6, rttMs: 10 });
    const heard: [string, number][] = [];
    let delivered = 0;
    b.onFrame(() => delivered++);
    b.onPeerGone((peer) => heard.push([peer, clock.now()]));
    void a.send("b", new Uint8Array(FRAME_HEADER_BYTES + 100_000)).catch(() => undefined);
    network.kill("a", "closed");
    await expect(a.send("b", new Uint8Array(FRAME_HEADER_BYTES))).rejects.toThrow(/dead/);
    await clock.run(() => false, 10_000);
    expect(delivered).toBe(0);
    expect(heard).toEqual([["a", 500]]);
  });
});

const BASE: SwarmConfig = {
  peers: 6,
  topology: "ring",
  codec: "dense",
  innerSteps: 1,
  perPeerBatch: 32,
  leaseAhead: false,
  updateMs: 0,
  modelParams: 100_000,
  simulatedParams: 1_000,
  stateBytes: 1_200_000,
  population: homogeneous(DEFAULT_POPULATION),
  departuresPerMinute: 0,
  joinsPerMinute: 0,
  rounds: 3,
  maxVirtualMs: 3_600_000,
  seed: 3,
};

describe("Swarm: the real coordinator and all-reducers in virtual time", () => {
  it("commits the rounds asked for; compute is lease/speed, and a ring all-reduce costs its 2(N-1) latency steps plus its bytes", async () => {
    const result = await new Swarm(BASE, new VirtualClock(settle)).run();
    expect(result.rounds).toHaveLength(3);
    const { samplesPerSecond, upBps, rttMs } = { samplesPerSecond: DEFAULT_POPULATION.samplesPerSecond.median, upBps: DEFAULT_POPULATION.upBps.median, rttMs: DEFAULT_POPULATION.rttMs.median };
    for (const round of result.rounds) {
      expect(round.plan).toBe("ring");
      expect(round.samples).toBe(6 * 32);
      expect(round.computeMs).toBeCloseTo((32 / samplesPerSecond) * 1000, 6);
      const steps = 2 * (6 - 1) * rttMs; // one-way latency = (rtt + rtt) / 2 per step
      const serialise = ((2 * 5) / 6) * 100_001 * 4 * 8 * 1000 / upBps;
      expect(round.allReduceMs).toBeGreaterThan(steps + serialise);
      expect(round.allReduceMs).toBeLessThan(1.5 * (steps + serialise));
    }
    // A member sends 2(N-1)/N of the modelled vector, plus headers.
    expect(result.bytesPerPeerPerRound / ((2 * 5 * 100_001 * 4) / 6)).toBeGreaterThan(1);
    expect(result.bytesPerPeerPerRound / ((2 * 5 * 100_001 * 4) / 6)).toBeLessThan(1.05);
    expect(result.scalingEfficiency).toBeGreaterThan(0);
    expect(result.scalingEfficiency).toBeLessThan(1);
  });

  it("at 64 members the torus's all-reduce beats the ring's (28 latency steps instead of 126), and groups beat the torus (12 steps)", async () => {
    const [ring, torus, groups] = await Promise.all(
      (["ring", "torus", "groups"] as const).map((topology) => new Swarm({ ...BASE, peers: 64, topology, rounds: 1 }, new VirtualClock(settle)).run()),
    );
    expect(torus!.rounds[0]!.plan).toBe("torus 8x8");
    expect(groups!.rounds[0]!.plan).toBe("groups 2x2x2x2x2x2");
    expect(torus!.rounds[0]!.allReduceMs).toBeLessThan(0.5 * ring!.rounds[0]!.allReduceMs);
    expect(groups!.rounds[0]!.allReduceMs).toBeLessThan(torus!.rounds[0]!.allReduceMs);
    expect(torus!.scalingEfficiency).toBeGreaterThan(ring!.scalingEfficiency);
    expect(groups!.scalingEfficiency).toBeGreaterThan(torus!.scalingEfficiency);
    // The same bytes: every plan moves 2(N−1)/N of the vector per member, headers aside.
    expect(groups!.bytesPerPeerPerRound / ring!.bytesPerPeerPerRound).toBeGreaterThan(0.95);
    expect(groups!.bytesPerPeerPerRound / ring!.bytesPerPeerPerRound).toBeLessThan(1.1);
  });

  it("DiLoCo's H inner steps multiply a round's compute and samples, not its all-reduce", async () => {
    const [sync, diloco] = await Promise.all([1, 16].map((innerSteps) => new Swarm({ ...BASE, innerSteps, rounds: 2 }, new VirtualClock(settle)).run()));
    for (const [a, b] of sync!.rounds.map((round, k) => [round, diloco!.rounds[k]!] as const)) {
      expect(b.samples).toBe(16 * a.samples);
      expect(b.computeMs).toBeCloseTo(16 * a.computeMs, 6);
      expect(b.allReduceMs).toBeCloseTo(a.allReduceMs, 6);
    }
    expect(diloco!.scalingEfficiency).toBeGreaterThan(sync!.scalingEfficiency);
  });

  it("a peer's update adds to every round; leases ahead hide compute behind the commit wait", async () => {
    const config = { ...BASE, rounds: 4 };
    const [plain, updating, ahead] = await Promise.all(
      [config, { ...config, updateMs: 40 }, { ...config, leaseAhead: true }].map((c) => new Swarm(c, new VirtualClock(settle)).run()),
    );
    for (const [a, b] of plain!.rounds.map((round, k) => [round, updating!.rounds[k]!] as const)) expect(b.roundMs - a.roundMs).toBeCloseTo(40, 6);
    // A round's compute (16 ms) overlaps the previous round's commit wait (a member's result and
    // the commit each take a 25 ms one-way latency): once leases ahead flow, rounds are shorter by it.
    const computeMs = (32 / DEFAULT_POPULATION.samplesPerSecond.median) * 1000;
    const last = (r: typeof plain) => r!.rounds.at(-1)!.roundMs;
    expect(last(plain) - last(ahead)).toBeCloseTo(computeMs, 6);
    expect(ahead!.samplesPerSecond).toBeGreaterThan(plain!.samplesPerSecond);
  });

  it.each([false, true])("under churn rounds abort and the swarm goes on committing; the same seed gives the same run (leases ahead: %s)", async (leaseAhead) => {
    const churn = { ...BASE, peers: 8, population: DEFAULT_POPULATION, departuresPerMinute: 20, joinsPerMinute: 20, rounds: 6, leaseAhead };
    const [a, b] = await Promise.all([new Swarm(churn, new VirtualClock(settle)).run(), new Swarm(churn, new VirtualClock(settle)).run()]);
    expect(a!.rounds).toHaveLength(6);
    expect(a!.departures).toBeGreaterThan(0);
    expect(a!.aborted).toBeGreaterThan(0);
    expect(b).toEqual(a);
  });
});

describe("simulateAllReduce: one all-reduce of identical peers, as bench:allreduce measures it", () => {
  it("a bandwidth-bound ring takes 2(N-1)/N of the vector over the link; a latency-bound torus beats the ring", async () => {
    const link = { upBps: 80e6, downBps: 80e9, rttMs: 0.2 };
    const ms = await simulateAllReduce({ peers: 4, layout: "ring", bytes: 4 * 1024 * 1024, frameBytes: 64 * 1024, link }, settle);
    const ideal = (((2 * 3) / 4) * 4 * 1024 * 1024 * 8 * 1000) / 80e6;
    expect(ms / ideal).toBeGreaterThan(1);
    expect(ms / ideal).toBeLessThan(1.1);
    const slowPath = { upBps: 1e9, downBps: 1e9, rttMs: 50 };
    const ring = await simulateAllReduce({ peers: 16, layout: "ring", bytes: 65_536, frameBytes: 64 * 1024, link: slowPath }, settle);
    const torus = await simulateAllReduce({ peers: 16, layout: "torus", bytes: 65_536, frameBytes: 64 * 1024, link: slowPath }, settle);
    expect(ring).toBeGreaterThan(30 * 50); // 2(16 - 1) steps of 50 ms one-way
    expect(torus).toBeLessThan(13 * 50); // 2(4 - 1) + 2(4 - 1) steps
  });
});

describe("the ring's progress timeout in a large ring with a late starter (found by the simulator)", () => {
  /** n peers in a ring on 35 ms hops; the last starts 8 s after the others. Each member's error code, or "ok". */
  async function ringWithLateStarter(n: number, hopMs: number): Promise<string[]> {
    const clock = new VirtualClock(settle);
    const network = new SimNetwork(clock, { payloadScale: 1, goneAfterMs: 1_000 });
    const ids = Array.from({ length: n }, (_, k) => `p${k}`);
    const reducers = ids.map((id) => createAllReducer({ transport: network.add(id, { upBps: 1e9, downBps: 1e9, rttMs: 35 }), clock, options: { hopMs } }));
    const outcomes: string[] = [];
    const start = (k: number): void =>
      void reducers[k]!.allReduce({ attempt: 1, ring: ids, gradient: new Float32Array(n).fill(k), samples: 1 }).then(
        () => outcomes.push("ok"),
        (error: AllReduceError) => outcomes.push(error.code),
      );
    for (let k = 0; k < n - 1; k++) start(k);
    clock.setTimeout(() => start(n - 1), 8_000);
    await clock.run(() => outcomes.length === n, 600_000);
    for (const reducer of reducers) reducer.close();
    return outcomes;
  }

  // The late member's last reduce-scatter frame arrives after 199 hops (7 s), the first all-gather
  // frame only once its own sums have gone round too: a gap of min(lateness, 199 hops) = 7 s.
  it("200 members, one 8 s late: a flat 5 s gap between frames failed the round; n·hopMs on top lets it finish", async () => {
    expect(await ringWithLateStarter(200, 0)).toContain("timeout");
    expect(new Set(await ringWithLateStarter(200, 50))).toEqual(new Set(["ok"]));
  });
});

describe("simulateTraining: whole rounds of identical tabs, as bench:train measures them", () => {
  const tabs = { batch: 96, computeMs: 30, readbackMs: 400, updateMs: 40, modelParams: 101_770, stateBytesPerParam: 12, topology: "auto" as const };

  it("a round is the local work plus the all-reduce: the messages to and from the server hide behind the lease computed ahead", async () => {
    for (const peers of [2, 4]) {
      const fast = await simulateTraining({ ...tabs, peers, link: { upBps: 8e12, downBps: 8e12, rttMs: 1 } }, settle);
      expect(fast.plan).toBe("ring");
      expect(fast.allReduceMs).toBeCloseTo(2 * (peers - 1), 0); // 2(N−1) steps of a 1 ms path
      expect(fast.intervalMs - fast.allReduceMs).toBeCloseTo(tabs.computeMs + tabs.readbackMs + tabs.updateMs, 0);
    }
  });

  it("a thin link lengthens the all-reduce and the round by the same time", async () => {
    const [fast, thin] = await Promise.all([8e12, 8e6].map((upBps) => simulateTraining({ ...tabs, peers: 4, link: { upBps, downBps: 8e12, rttMs: 1 } }, settle)));
    // A ring member sends 2(N−1)/N of the 407 KB gradient: 611 KB at 1 MB/s.
    expect(thin!.allReduceMs - fast!.allReduceMs).toBeGreaterThan(600);
    expect(thin!.intervalMs - fast!.intervalMs).toBeCloseTo(thin!.allReduceMs - fast!.allReduceMs, 0);
  });

  it("refuses a batch that does not split over the tabs", async () => {
    await expect(simulateTraining({ ...tabs, peers: 5, link: { upBps: 8e6, downBps: 8e6, rttMs: 1 } }, settle)).rejects.toThrow(/evenly/);
  });
});
