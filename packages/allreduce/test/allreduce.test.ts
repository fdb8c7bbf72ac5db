import { describe, expect, it } from "vitest";
import { allReduceAll, closeAll, makeCluster, reference, sameBits } from "./harness.ts";

const SIZES_FOR = (n: number): number[] => [0, 1, Math.max(0, n - 1), 3 * n + 1, 4099];

describe("ring all-reduce over a seeded, reordering in-memory network", () => {
  for (let n = 1; n <= 8; n++) {
    for (const length of SIZES_FOR(n)) {
      it(`N=${n}, length=${length}: every peer gets the same bits, within the float32 bound of the float64 mean`, async () => {
        // Small frames so even short vectors are cut into several chunks per segment.
        const cluster = makeCluster(n, length, 1000 * n + length, { frameBytes: 64 });
        const settled = await allReduceAll(cluster, 1);
        const results = settled.map((s) => {
          if (s.status === "rejected") throw s.reason;
          return s.value;
        });
        const { mean, bound } = reference(cluster.peers);
        const first = results[0]!.mean;
        expect(first.length).toBe(length);
        for (const result of results) {
          expect(sameBits(result.mean, first)).toBe(true);
          expect(result.totalSamples).toBe(cluster.peers.reduce((s, p) => s + p.samples, 0));
        }
        for (let e = 0; e < length; e++) {
          expect(Math.abs((first[e] as number) - (mean[e] as number))).toBeLessThanOrEqual(bound[e] as number);
        }
        closeAll(cluster);
      });
    }
  }

  it("N=8, length=1e6 with default 64 KiB frames: bit-identical and within bound", async () => {
    const cluster = makeCluster(8, 1_000_000, 42);
    const results = (await allReduceAll(cluster, 7)).map((s) => {
      if (s.status === "rejected") throw s.reason;
      return s.value;
    });
    const { mean, bound } = reference(cluster.peers);
    const first = results[0]!.mean;
    for (const r of results) expect(sameBits(r.mean, first)).toBe(true);
    let worst = 0;
    for (let e = 0; e < first.length; e++) worst = Math.max(worst, Math.abs((first[e] as number) - (mean[e] as number)) / (bound[e] as number));
    expect(worst).toBeLessThanOrEqual(1);
    // Bandwidth optimality: each peer sends 2(N-1)/N of the vector (plus the sample count), plus headers.
    const payloadBytes = (1_000_001 * 4 * 2 * 7) / 8;
    for (const r of results) {
      expect(r.stats.bytesSent / payloadBytes).toBeLessThan(1.002);
      expect(r.stats.bytesSent / payloadBytes).toBeGreaterThanOrEqual(0.999);
    }
    closeAll(cluster);
  });

  it("weights each gradient by its sample count", async () => {
    const cluster = makeCluster(3, 2, 5);
    cluster.peers[0]!.gradient.set([1, 10]);
    cluster.peers[0]!.samples = 1;
    cluster.peers[1]!.gradient.set([4, 10]);
    cluster.peers[1]!.samples = 3;
    cluster.peers[2]!.gradient.set([100, 10]);
    cluster.peers[2]!.samples = 0;
    const [first] = await allReduceAll(cluster, 1);
    if (first?.status !== "fulfilled") throw new Error("round failed");
    expect(Array.from(first.value.mean)).toEqual([(1 + 12) / 4, 10]);
    closeAll(cluster);
  });

  it("runs many rounds on the same transport, and does not touch the callers' gradients", async () => {
    const cluster = makeCluster(4, 300, 9, { frameBytes: 128 });
    const before = cluster.peers.map((p) => p.gradient.slice());
    for (let attempt = 1; attempt <= 5; attempt++) {
      const settled = await allReduceAll(cluster, attempt * 10);
      expect(settled.every((s) => s.status === "fulfilled")).toBe(true);
    }
    cluster.peers.forEach((p, k) => expect(p.gradient).toEqual(before[k]));
    closeAll(cluster);
  });

  it("holds frames of a round a peer has not started yet (a faster peer ran ahead)", async () => {
    const cluster = makeCluster(3, 1000, 11, { frameBytes: 64 });
    const [a, b, c] = cluster.peers as [typeof cluster.peers[0], typeof cluster.peers[0], typeof cluster.peers[0]];
    const early = [a, b].map((p) => p.reducer.allReduce({ attempt: 1, ring: cluster.ring, gradient: p.gradient, samples: p.samples }));
    await cluster.network.flush();
    expect(c.reducer.counters().bufferedFutureBytes).toBeGreaterThan(0);
    const late = c.reducer.allReduce({ attempt: 1, ring: cluster.ring, gradient: c.gradient, samples: c.samples });
    const results = await Promise.all([...early, late]);
    expect(results[2]!.mean).toEqual(results[0]!.mean);
    expect(c.reducer.counters().bufferedFutureBytes).toBe(0);
    closeAll(cluster);
  });

  it("refuses a reused or decreasing round id, a ring without itself, and a repeated member", async () => {
    const cluster = makeCluster(2, 4, 3);
    const [a] = cluster.peers;
    await allReduceAll(cluster, 5);
    await expect(a!.reducer.allReduce({ attempt: 5, ring: cluster.ring, gradient: a!.gradient, samples: 1 })).rejects.toThrow(/attempt id 5/);
    await expect(a!.reducer.allReduce({ attempt: 6, ring: ["x", "y"], gradient: a!.gradient, samples: 1 })).rejects.toThrow(/does not contain/);
    await expect(a!.reducer.allReduce({ attempt: 7, ring: [a!.id, a!.id], gradient: a!.gradient, samples: 1 })).rejects.toThrow(/repeated/);
    closeAll(cluster);
  });
});
