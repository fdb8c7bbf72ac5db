import { encodeAbortFrame, encodeDataFrame, FrameKind } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { AllReduceError, systemClock, type AllReduceOptions } from "../src/index.ts";
import { allReduceAll, closeAll, errorsOf, makeCluster, sameBits, type Cluster } from "./harness.ts";

const FAST: Partial<AllReduceOptions> = { frameBytes: 64, progressTimeoutMs: 150, hopMs: 0, ringStartTimeoutMs: 150, roundTimeoutMs: 3_000 };

async function survivorsSucceedInNewRing(cluster: Cluster, dead: string, attempt: number): Promise<void> {
  const survivors = cluster.peers.filter((p) => p.id !== dead);
  const ring = cluster.ring.filter((id) => id !== dead);
  const settled = await allReduceAll(cluster, attempt, survivors, ring);
  const results = settled.map((s) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  });
  for (const r of results) expect(sameBits(r.mean, results[0]!.mean)).toBe(true);
}

describe("a peer dying at every point of the schedule", () => {
  for (const n of [2, 3, 4]) {
    it(`N=${n}: every survivor fails with a typed error naming a ring member, or all get the full result; then a new ring works`, async () => {
      const probe = makeCluster(n, 100, 77, FAST);
      const clean = await allReduceAll(probe, 1);
      const first = clean[0]!;
      if (first.status === "rejected") throw first.reason;
      const expected = first.value.mean;
      const framesPerPeer = probe.network.framesSent("peer-1");
      closeAll(probe);
      expect(framesPerPeer).toBeGreaterThan(2 * (n - 1)); // several chunks per step, or the test is weak

      for (let k = 0; k <= framesPerPeer; k++) {
        const cluster = makeCluster(n, 100, 77, FAST);
        const victim = "peer-1";
        cluster.network.killAfterFrames(victim, k);
        const settled = await allReduceAll(cluster, 1);
        for (const s of settled.filter((_, index) => cluster.peers[index]!.id !== victim)) {
          if (s.status === "fulfilled") {
            // Only possible once the victim had sent everything: the result must then be complete.
            expect(k).toBe(framesPerPeer);
            expect(sameBits(s.value.mean, expected)).toBe(true);
          } else {
            expect(s.reason).toBeInstanceOf(AllReduceError);
            expect(cluster.ring).toContain((s.reason as AllReduceError).suspect);
            expect(["peer-gone", "aborted", "timeout"]).toContain((s.reason as AllReduceError).code);
          }
        }
        await cluster.network.flush();
        await survivorsSucceedInNewRing(cluster, victim, 2);
        closeAll(cluster);
      }
    });
  }

  it("a member entering late (still computing) is waited for up to ringStartTimeoutMs, not progressTimeoutMs", async () => {
    const cluster = makeCluster(3, 50, 3, { ...FAST, ringStartTimeoutMs: 1_000 });
    const [a, b, c] = cluster.peers;
    const early = [a!, b!].map((p) => p.reducer.allReduce({ attempt: 1, ring: cluster.ring, gradient: p.gradient, samples: p.samples }));
    await new Promise((resolve) => systemClock().setTimeout(() => resolve(undefined), 400)); // > progressTimeoutMs, < ringStartTimeoutMs
    const late = c!.reducer.allReduce({ attempt: 1, ring: cluster.ring, gradient: c!.gradient, samples: c!.samples });
    const results = await Promise.all([...early, late]);
    expect(sameBits(results[0]!.mean, results[2]!.mean)).toBe(true);
    closeAll(cluster);
  });

  it("a hung peer (silent, link open) makes every survivor fail within the timeouts, naming it at its right neighbour", async () => {
    const cluster = makeCluster(4, 500, 3, FAST);
    const hung = cluster.ring[2]!;
    cluster.network.silence(hung);
    const started = Date.now();
    const survivors = cluster.peers.filter((p) => p.id !== hung);
    const all = await allReduceAll(cluster, 1);
    const errors = errorsOf(all.filter((_, index) => cluster.peers[index]!.id !== hung));
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThan(FAST.progressTimeoutMs! * 3);
    const rightOfHung = cluster.ring[3]!;
    const atRight = errors[survivors.findIndex((p) => p.id === rightOfHung)]!;
    expect(atRight.code).toBe("timeout");
    expect(atRight.suspect).toBe(hung);
    closeAll(cluster);
  });

  it("a killed peer is named by everyone via the propagated abort, fast (no timeout needed)", async () => {
    const cluster = makeCluster(5, 2000, 8, { ...FAST, progressTimeoutMs: 2_000, ringStartTimeoutMs: 2_000, roundTimeoutMs: 10_000 });
    const victim = cluster.ring[1]!;
    cluster.network.killAfterFrames(victim, 3);
    const started = Date.now();
    const settled = await allReduceAll(cluster, 1);
    const errors = errorsOf(settled.filter((_, index) => cluster.peers[index]!.id !== victim));
    expect(Date.now() - started).toBeLessThan(1_000);
    for (const e of errors) expect(e.suspect).toBe(victim);
    closeAll(cluster);
  });
});

describe("bad frames are rejected with an error naming the sender", () => {
  const cases: { name: string; frame: (attempt: number) => Uint8Array<ArrayBuffer>; pattern: RegExp }[] = [
    { name: "wrong length", frame: (r) => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: r, step: 0, segment: 2, offset: 0 }, new Float32Array(3)), pattern: /has 12 payload bytes, expected 64 \(16 elements, dense\)/ },
    { name: "unknown segment", frame: (r) => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: r, step: 0, segment: 99, offset: 0 }, new Float32Array(16)), pattern: /segment 99/ },
    { name: "step beyond the schedule", frame: (r) => encodeDataFrame({ kind: FrameKind.AllGather, attempt: r, step: 9, segment: 0, offset: 0 }, new Float32Array(16)), pattern: /step 9/ },
    { name: "NaN", frame: (r) => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: r, step: 0, segment: 2, offset: 16 }, new Float32Array(16).fill(Number.NaN)), pattern: /non-finite/ },
    { name: "Infinity", frame: (r) => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: r, step: 0, segment: 2, offset: 0 }, new Float32Array(16).fill(Infinity)), pattern: /non-finite/ },
    { name: "oversize", frame: () => new Uint8Array(300 * 1024), pattern: /exceeds MAX_FRAME_BYTES/ },
    { name: "garbage", frame: () => new Uint8Array([9, 9, 9]), pattern: /shorter than/ },
  ];
  for (const { name, frame, pattern } of cases) {
    it(name, async () => {
      // A 3-ring of 100+1 elements: the target (position 1) receives segment 2 (33 elements) at
      // reduce-scatter step 0, in 16-element chunks at offsets 0, 16, 32.
      const cluster = makeCluster(3, 100, 21, FAST);
      const [left, target] = [cluster.ring[0]!, cluster.ring[1]!];
      // Only the target runs, so the forged frame is the only one it sees: no race with real ones.
      const pending = allReduceAll(cluster, 1, cluster.peers.filter((p) => p.id === target));
      cluster.network.inject(left, target, frame(1));
      const [outcome] = await pending;
      expect(outcome!.status).toBe("rejected");
      const error = (outcome as PromiseRejectedResult).reason as AllReduceError;
      expect(error.code).toBe("bad-frame");
      expect(error.suspect).toBe(left);
      expect(error.message).toMatch(pattern);
      closeAll(cluster);
    });
  }

  it("a data frame from a peer that is not the left neighbour", async () => {
    const cluster = makeCluster(3, 100, 21, FAST);
    const [target, stranger] = [cluster.ring[1]!, cluster.ring[2]!];
    const pending = allReduceAll(cluster, 1);
    cluster.network.inject(stranger, target, encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 2, offset: 0 }, new Float32Array(16)));
    const error = (await pending)[cluster.peers.findIndex((p) => p.id === target)] as PromiseRejectedResult;
    expect((error.reason as AllReduceError).suspect).toBe(stranger);
    expect((error.reason as AllReduceError).message).toMatch(/only the left neighbour/);
    closeAll(cluster);
  });

  it("a duplicated chunk", async () => {
    const cluster = makeCluster(2, 10, 4, { ...FAST, frameBytes: 16 });
    const [left, target] = [cluster.ring[0]!, cluster.ring[1]!];
    // 11 elements over 2 segments: target (position 1) receives segment 1 (5 elements) in reduce-scatter.
    const chunk = encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 1, offset: 0 }, new Float32Array(4));
    const onlyTarget = cluster.peers.filter((p) => p.id === target);
    const pending = allReduceAll(cluster, 1, onlyTarget);
    cluster.network.inject(left, target, chunk);
    cluster.network.inject(left, target, chunk.slice());
    const [outcome] = await pending;
    expect(((outcome as PromiseRejectedResult).reason as AllReduceError).message).toMatch(/duplicate/);
    closeAll(cluster);
  });
});

describe("round bookkeeping", () => {
  it("frames of an earlier (aborted) round are ignored and counted, never applied", async () => {
    const cluster = makeCluster(2, 10, 6, FAST);
    await allReduceAll(cluster, 5);
    const [a, b] = cluster.peers;
    cluster.network.inject(a!.id, b!.id, encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 4, step: 0, segment: 1, offset: 0 }, new Float32Array(5).fill(1e9)));
    await cluster.network.flush();
    expect(b!.reducer.counters().staleFrames).toBe(1);
    const results = await allReduceAll(cluster, 6);
    expect(results.every((r) => r.status === "fulfilled")).toBe(true);
    closeAll(cluster);
  });

  it("an abort for a round not started yet fails that round as soon as it starts", async () => {
    const cluster = makeCluster(3, 10, 6, FAST);
    const [a, b] = cluster.peers;
    cluster.network.inject(a!.id, b!.id, encodeAbortFrame({ attempt: 3, suspect: "peer-2", reason: "test" }));
    await cluster.network.flush();
    await expect(b!.reducer.allReduce({ attempt: 3, ring: cluster.ring, gradient: b!.gradient, samples: 1 })).rejects.toMatchObject({
      code: "aborted",
      suspect: "peer-2",
    });
    closeAll(cluster);
  });

  it("an abort from a peer outside the ring is not obeyed", async () => {
    const cluster = makeCluster(3, 10, 6, FAST);
    const outsider = cluster.network.transport("outsider");
    const pending = allReduceAll(cluster, 1);
    await outsider.send(cluster.ring[0]!, encodeAbortFrame({ attempt: 1, suspect: cluster.ring[1]!, reason: "lies" }));
    expect((await pending).every((s) => s.status === "fulfilled")).toBe(true);
    closeAll(cluster);
  });

  it("own NaN gradient or bad sample count: bad-input naming self, and the others are told", async () => {
    const cluster = makeCluster(3, 10, 6, FAST);
    cluster.peers[0]!.gradient[4] = Number.NaN;
    const errors = errorsOf(await allReduceAll(cluster, 1));
    expect(errors[0]!.code).toBe("bad-input");
    for (const e of errors) expect(e.suspect).toBe("peer-0");
    cluster.peers[0]!.gradient[4] = 0;
    cluster.peers[1]!.samples = 1.5;
    const again = errorsOf(await allReduceAll(cluster, 2));
    expect(again[1]!.code).toBe("bad-input");
    closeAll(cluster);
  });

  it("all peers with zero samples fail alike with no-samples", async () => {
    const cluster = makeCluster(2, 10, 6, FAST);
    for (const p of cluster.peers) p.samples = 0;
    for (const e of errorsOf(await allReduceAll(cluster, 1))) expect(e.code).toBe("no-samples");
    closeAll(cluster);
  });

  it("close() fails the running round with closed", async () => {
    const cluster = makeCluster(2, 10, 6, FAST);
    const [a] = cluster.peers;
    const pending = a!.reducer.allReduce({ attempt: 1, ring: cluster.ring, gradient: a!.gradient, samples: 1 });
    a!.reducer.close();
    await expect(pending).rejects.toMatchObject({ code: "closed" });
    closeAll(cluster);
  });

  it("abortRound fails the running round at once without a timeout, and makes a future round id stale", async () => {
    const cluster = makeCluster(2, 10, 6, { ...FAST, progressTimeoutMs: 5_000, ringStartTimeoutMs: 5_000, roundTimeoutMs: 10_000 });
    const [a] = cluster.peers;
    const pending = a!.reducer.allReduce({ attempt: 1, ring: cluster.ring, gradient: a!.gradient, samples: 1 });
    a!.reducer.abortRound(1, "coordinator aborted attempt 1");
    await expect(pending).rejects.toMatchObject({ code: "aborted", suspect: undefined });
    a!.reducer.abortRound(3, "aborted before it started");
    await expect(a!.reducer.allReduce({ attempt: 3, ring: cluster.ring, gradient: a!.gradient, samples: 1 })).rejects.toThrow(/attempt id 3/);
    closeAll(cluster);
  });

  it("rejects options whose timeouts contradict each other", () => {
    expect(() => makeCluster(2, 1, 1, { progressTimeoutMs: 500, ringStartTimeoutMs: 500, roundTimeoutMs: 400 })).toThrow(/must exceed/);
    expect(() => makeCluster(2, 1, 1, { progressTimeoutMs: 500, ringStartTimeoutMs: 100 })).toThrow(/at least progressTimeoutMs/);
    expect(() => makeCluster(2, 1, 1, { frameBytes: 300 * 1024 })).toThrow(/frameBytes/);
  });
});
