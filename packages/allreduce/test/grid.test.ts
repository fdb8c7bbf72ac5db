import { encodeCodedFrame, FRAME_HEADER_BYTES, FrameKind, gridPlaces, gridStage } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { AllReduceError, CHUNK_CODECS, partition, ringSumErrorBound, type AllReduceOptions, type GridRoundArgs, type RoundResult, type Span } from "../src/index.ts";
import { closeAll, errorsOf, makeCluster, reference, sameBits, type Cluster, type Peer } from "./harness.ts";

// The d-dimensional grid (grid.ts); torus.test.ts covers its two-dimensional case, the torus.
const FAST: Partial<AllReduceOptions> = { frameBytes: 64, progressTimeoutMs: 150, hopMs: 0, ringStartTimeoutMs: 150, roundTimeoutMs: 3_000 };


function gridAll(cluster: Cluster, attempt: number, members: readonly string[], dims: number[], peers: Peer[] = cluster.peers, extra: Partial<GridRoundArgs> = {}): Promise<PromiseSettledResult<RoundResult>[]> {
  return Promise.allSettled(peers.map((p) => p.reducer.allReduceGrid({ attempt, members, dims, gradient: p.gradient, samples: p.samples, ...extra })));
}

function valuesOf(settled: PromiseSettledResult<RoundResult>[]): RoundResult[] {
  return settled.map((s) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  });
}

/**
 * Payload elements the member at grid place `at` sends, from the layout alone: along each dimension
 * but the last, its group's reduce-scatter of the span it holds (all of it but its own part) and
 * later the all-gather (all but the part it receives first); along the last, both phases.
 */
function expectedPayloadElements(vector: number, dims: number[], at: number): number {
  let span: Span = { start: 0, length: vector };
  let stride = 1;
  let elements = 0;
  for (const [k, g] of dims.entries()) {
    const coord = Math.floor(at / stride) % g;
    const parts = partition(span.length, g);
    const own = parts[coord]!.length;
    const next = parts[(coord + 1) % g]!.length;
    elements += k === dims.length - 1 ? (g === 1 ? 0 : span.length - own + span.length - next) : span.length - own + (g === 1 ? 0 : span.length - next);
    span = { start: span.start + parts[coord]!.start, length: own };
    stride *= g;
  }
  return elements;
}

describe("grid all-reduce: the mean over d dimensions of groups, bit-identical on every member", () => {
  const grids: number[][] = [[2, 2, 2], [2, 3, 4], [3, 3, 3], [4, 2, 3, 2], [2, 2, 2, 2, 2, 2], [1, 3, 2]];
  for (const dims of grids) {
    for (const length of [0, 1, 7, 100]) {
      it(`${dims.join("x")}, ${length} elements: the float64 mean within the float32 bound, same bits everywhere, exact bytes`, async () => {
        const n = gridPlaces(dims);
        const cluster = makeCluster(n, length, 97 * n + length, { frameBytes: 256 });
        const results = valuesOf(await gridAll(cluster, 1, cluster.ring, dims));
        const { mean, bound } = reference(cluster.peers);
        const total = cluster.peers.reduce((sum, p) => sum + p.samples, 0);
        for (const [index, result] of results.entries()) {
          expect(sameBits(result.mean, results[0]!.mean)).toBe(true);
          expect(result.totalSamples).toBe(total);
          const at = cluster.ring.indexOf(cluster.peers[index]!.id);
          expect(result.stats.bytesSent - FRAME_HEADER_BYTES * result.stats.framesSent).toBe(4 * expectedPayloadElements(length + 1, dims, at));
        }
        for (let e = 0; e < length; e++) expect(Math.abs(results[0]!.mean[e]! - mean[e]!)).toBeLessThanOrEqual(bound[e]!);
        closeAll(cluster);
      });
    }
  }

  it("at 2x2x2x2 and 10 000 elements a member sends the flat ring's bytes within the headers", async () => {
    const cluster = makeCluster(16, 10_000, 5, { ...FAST, frameBytes: 4096 });
    const flat = valuesOf(await Promise.allSettled(cluster.peers.map((p) => p.reducer.allReduce({ attempt: 1, ring: cluster.ring, gradient: p.gradient, samples: p.samples }))));
    const grid = valuesOf(await gridAll(cluster, 2, cluster.ring, [2, 2, 2, 2]));
    const mean = (results: RoundResult[]): number => results.reduce((sum, r) => sum + r.stats.bytesSent, 0) / results.length;
    expect(mean(grid) / mean(flat)).toBeGreaterThan(0.99);
    expect(mean(grid) / mean(flat)).toBeLessThan(1.01);
    closeAll(cluster);
  });

  for (const codec of ["fp16", "int8"] as const) {
    it(`${codec} at 2x3x2: same bits everywhere, within the codec's bound for Σ g + d − 1 encodings`, async () => {
      const dims = [2, 3, 2];
      const cluster = makeCluster(12, 500, 9, { ...FAST, frameBytes: 128 });
      const results = valuesOf(await gridAll(cluster, 1, cluster.ring, dims, cluster.peers, { codec }));
      for (const result of results) expect(sameBits(result.mean, results[0]!.mean)).toBe(true);
      const total = cluster.peers.reduce((sum, p) => sum + p.samples, 0);
      expect(results[0]!.totalSamples).toBe(total);
      let S = 0;
      for (const p of cluster.peers) S += p.gradient.reduce((max, g) => Math.max(max, Math.abs(g * p.samples)), 0);
      const sumBound = ringSumErrorBound(CHUNK_CODECS[codec], 2 + 3 + 2 + 2, S);
      const { mean } = reference(cluster.peers);
      for (let e = 0; e < 500; e++) expect(Math.abs(results[0]!.mean[e]! - mean[e]!)).toBeLessThanOrEqual((sumBound / total) * 1.001 + 1e-30);
      closeAll(cluster);
    });
  }

  for (const codec of ["dense", "int8"] as const) {
    it(`2x2x2 with 4 attached (one per dimension-0 group), ${codec}: every member gets the same bits and the exact total`, async () => {
      const cluster = makeCluster(12, 300, 61, { frameBytes: 128 });
      const members = cluster.ring.slice(0, 8);
      const attached = cluster.ring.slice(8);
      const results = valuesOf(await gridAll(cluster, 1, members, [2, 2, 2], cluster.peers, { attached, codec }));
      for (const result of results) expect(sameBits(result.mean, results[0]!.mean)).toBe(true);
      expect(results[0]!.totalSamples).toBe(cluster.peers.reduce((sum, p) => sum + p.samples, 0));
      if (codec === "dense") {
        const { mean, bound } = reference(cluster.peers);
        for (let e = 0; e < 300; e++) expect(Math.abs(results[0]!.mean[e]! - mean[e]!)).toBeLessThanOrEqual(bound[e]!);
      }
      closeAll(cluster);
    });
  }

  it("grid, torus and ring rounds alternate on one reducer", async () => {
    const cluster = makeCluster(8, 50, 4, FAST);
    const a = valuesOf(await gridAll(cluster, 1, cluster.ring, [2, 2, 2]));
    valuesOf(await Promise.allSettled(cluster.peers.map((p) => p.reducer.allReduceTorus({ attempt: 2, rows: [cluster.ring.slice(0, 4), cluster.ring.slice(4)], gradient: p.gradient, samples: p.samples }))));
    valuesOf(await Promise.allSettled(cluster.peers.map((p) => p.reducer.allReduce({ attempt: 3, ring: cluster.ring, gradient: p.gradient, samples: p.samples }))));
    const b = valuesOf(await gridAll(cluster, 4, cluster.ring, [2, 2, 2]));
    expect(sameBits(a[0]!.mean, b[0]!.mean)).toBe(true);
    closeAll(cluster);
  });
});

describe("grid all-reduce: failures are all or nothing for the whole grid", () => {
  // [dims, every k-th frame count]: N up to 64, the victim in the grid's interior.
  const cases: [number[], number][] = [
    [[2, 2, 2], 1],
    [[3, 2, 2], 1],
    [[4, 4, 4], 3],
    [[2, 2, 2, 2, 2, 2], 3],
  ];
  for (const [dims, every] of cases) {
    it(`${dims.join("x")}: a member dying after every ${every === 1 ? "" : `${every}rd `}frame count: every survivor fails typed (or has the whole mean), then the survivors reduce again`, async () => {
      const n = gridPlaces(dims);
      const options = n < 64 ? FAST : { ...FAST, progressTimeoutMs: 2_000, ringStartTimeoutMs: 2_000, roundTimeoutMs: 10_000 };
      const probe = makeCluster(n, 200, 71, options);
      const clean = valuesOf(await gridAll(probe, 1, probe.ring, dims));
      const victim = probe.ring[n - 3]!;
      const framesSent = probe.network.framesSent(victim);
      closeAll(probe);
      const counts = Array.from({ length: framesSent + 1 }, (_, k) => k).filter((k) => k % every === 0 || k === framesSent);
      for (const k of counts) {
        const cluster = makeCluster(n, 200, 71, options);
        cluster.network.killAfterFrames(victim, k);
        const rounds = cluster.peers.map((p) => ({ id: p.id, round: p.reducer.allReduceGrid({ attempt: 1, members: cluster.ring, dims, gradient: p.gradient, samples: p.samples }) }));
        const victimRound = rounds.find((r) => r.id === victim)!.round.catch((error: unknown) => error);
        const settled = await Promise.allSettled(rounds.filter((r) => r.id !== victim).map((r) => r.round));
        for (const s of settled) {
          if (s.status === "fulfilled") expect(sameBits(s.value.mean, clean[0]!.mean)).toBe(true);
          else {
            expect(s.reason).toBeInstanceOf(AllReduceError);
            const error = s.reason as AllReduceError;
            expect(["peer-gone", "aborted", "timeout"]).toContain(error.code);
            if (error.suspect !== undefined) expect(cluster.ring).toContain(error.suspect);
          }
        }
        expect(settled.some((s) => s.status === "rejected") || k === framesSent).toBe(true);
        cluster.peers.find((p) => p.id === victim)!.reducer.close();
        await victimRound;
        await cluster.network.flush();
        // The survivors' next attempt: the same grid's first dimension one shorter would not fill it, so a flat ring.
        const survivors = cluster.peers.filter((p) => p.id !== victim);
        const again = valuesOf(await Promise.allSettled(survivors.map((p) => p.reducer.allReduce({ attempt: 2, ring: cluster.ring.filter((id) => id !== victim), gradient: p.gradient, samples: p.samples }))));
        for (const result of again) expect(sameBits(result.mean, again[0]!.mean)).toBe(true);
        closeAll(cluster);
      }
    }, 120_000);
  }

  it("a killed member is named by everyone through the aborts relayed along every dimension", async () => {
    const cluster = makeCluster(27, 200, 8, { ...FAST, progressTimeoutMs: 2_000, ringStartTimeoutMs: 2_000 });
    const victim = cluster.ring[13]!; // the cube's centre
    cluster.network.killAfterFrames(victim, 2);
    const settled = await gridAll(cluster, 1, cluster.ring, [3, 3, 3]);
    const errors = errorsOf(settled.filter((_, index) => cluster.peers[index]!.id !== victim));
    for (const error of errors) expect(error.suspect).toBe(victim);
    closeAll(cluster);
  });

  it("a frame of a dimension the grid does not have fails the attempt naming its sender", async () => {
    const cluster = makeCluster(8, 100, 21, FAST);
    const [sender, target] = [cluster.ring[0]!, cluster.ring[1]!];
    cluster.network.inject(sender, target, encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "dense", stage: gridStage(3) }, new Uint8Array(16)));
    const settled = await gridAll(cluster, 1, cluster.ring, [2, 2, 2]);
    const error = errorsOf([settled[cluster.peers.findIndex((p) => p.id === target)]!])[0]!;
    expect(error.code).toBe("bad-frame");
    expect(error.suspect).toBe(sender);
    expect(error.message).toMatch(/dimension 3 in a 3-dimensional grid round/);
    closeAll(cluster);
  });

  it("refuses a grid whose places are not its members, one dimension, too many attached, and topk", async () => {
    const cluster = makeCluster(8, 10, 1, FAST);
    const ids = cluster.ring;
    const peer = cluster.peers.find((p) => p.id === ids[0])!;
    const run = (extra: Partial<GridRoundArgs>) => peer.reducer.allReduceGrid({ attempt: 1, members: ids, dims: [2, 2, 2], gradient: peer.gradient, samples: 1, ...extra });
    await expect(run({ dims: [2, 2] })).rejects.toThrow(/a 2x2 grid has 4 places, not 8 members/);
    await expect(run({ dims: [8] })).rejects.toThrow(/2 to 12 dimensions/);
    await expect(run({ dims: [2, 2, 2.5] })).rejects.toThrow(/whole numbers/);
    await expect(run({ members: ids.slice(0, 4), dims: [2, 2], attached: ids.slice(4, 7) })).rejects.toThrow(/at most one per row/);
    await expect(run({ codec: "topk" as never })).rejects.toThrow(/topk/);
    await expect(run({ members: [...ids.slice(0, 7), ids[0]!] })).rejects.toThrow(/repeated peer/);
    closeAll(cluster);
  });
});
