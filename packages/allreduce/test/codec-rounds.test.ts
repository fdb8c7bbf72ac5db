import type { Codec } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import {
  CHUNK_CODECS,
  chunkOffsets,
  ErrorFeedback,
  partition,
  ringChunkBytes,
  ringChunkElements,
  ringSumErrorBound,
  topkChunkCount,
  topkCount,
  topkPairsPerChunk,
  topkSumErrorBound,
  type RoundResult,
} from "../src/index.ts";
import { allReduceAll, closeAll, FLOAT32_UNIT_ROUNDOFF, makeCluster, sameBits, type Cluster, type Peer } from "./harness.ts";

const SIZES_FOR = (n: number): number[] => [0, 1, Math.max(0, n - 1), 3 * n + 1, 4099];
const FRAME_BYTES = 64;
const TOPK_FRACTION = 0.1;
const u = FLOAT32_UNIT_ROUNDOFF;

function fulfilled(settled: PromiseSettledResult<RoundResult>[]): RoundResult[] {
  return settled.map((s) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  });
}

const contribution = (p: Peer): Float32Array => Float32Array.from(p.gradient, (g) => Math.fround(g * p.samples));

/**
 * Per element, the worst-case error of a summing codec's mean against the float64 mean: the ring
 * bound (codecs/ring-chunks.ts) over the element's chunk, the rounding of samples·g, and the division.
 */
function summingBound(codec: Exclude<Codec, "topk">, peers: Peer[], frameBytes: number): Float64Array {
  const length = peers[0]!.gradient.length;
  const n = peers.length;
  const total = peers.reduce((s, p) => s + p.samples, 0);
  const weighted = peers.map(contribution);
  const unit = ringChunkElements(CHUNK_CODECS[codec], frameBytes);
  const bound = new Float64Array(length);
  for (const span of partition(length + 1, n)) {
    for (const offset of chunkOffsets(span.length, unit)) {
      const [from, to] = [span.start + offset, Math.min(span.start + offset + unit, span.start + span.length, length)];
      let chunkMaxSum = 0;
      for (const c of weighted) {
        let max = 0;
        for (let e = from; e < to; e++) max = Math.max(max, Math.abs(c[e]!));
        chunkMaxSum += max;
      }
      const sumError = ringSumErrorBound(CHUNK_CODECS[codec], n, chunkMaxSum);
      for (let e = from; e < to; e++) {
        const absSum = peers.reduce((s, p) => s + Math.abs(p.samples * p.gradient[e]!), 0);
        const mean = peers.reduce((s, p) => s + p.samples * p.gradient[e]!, 0) / total;
        bound[e] = ((sumError + u * absSum) / total) * (1 + u) + u * Math.abs(mean);
      }
    }
  }
  return bound;
}

/** Independently of the package: the top-k residual and the mean of what was sent, with the bound against the full mean. */
function topkReference(peers: Peer[], fraction: number): { residuals: Float32Array[]; bound: Float64Array } {
  const length = peers[0]!.gradient.length;
  const k = topkCount(length, fraction);
  const total = peers.reduce((s, p) => s + p.samples, 0);
  const residuals = peers.map((p) => {
    const weighted = contribution(p);
    const order = Array.from(weighted.keys()).sort((a, b) => Math.abs(weighted[b]!) - Math.abs(weighted[a]!) || a - b);
    const residual = p.gradient.slice();
    if (p.samples > 0) for (const e of order.slice(0, k)) residual[e] = 0;
    return residual;
  });
  const bound = new Float64Array(length);
  for (let e = 0; e < length; e++) {
    let sent = 0;
    let unsent = 0;
    let full = 0;
    peers.forEach((p, index) => {
      const applied = residuals[index]![e] === 0 && p.samples > 0 ? Math.abs(Math.fround(p.samples * p.gradient[e]!)) : 0;
      sent += applied;
      unsent += Math.abs(p.samples * p.gradient[e]!) - applied + u * Math.abs(p.samples * p.gradient[e]!);
      full += p.samples * p.gradient[e]!;
    });
    bound[e] = (topkSumErrorBound(peers.length, sent, unsent) / total) * (1 + u) + u * Math.abs(full / total) + 1e-300;
  }
  return { residuals, bound };
}

function float64Mean(peers: Peer[]): Float64Array {
  const length = peers[0]!.gradient.length;
  const total = peers.reduce((s, p) => s + p.samples, 0);
  return Float64Array.from({ length }, (_, e) => peers.reduce((s, p) => s + p.samples * p.gradient[e]!, 0) / total);
}

describe("compressed rings over the seeded, reordering network", () => {
  for (const codec of ["fp16", "int8", "topk"] as const) {
    for (let n = 1; n <= 8; n++) {
      for (const length of SIZES_FOR(n)) {
        it(`${codec}, N=${n}, length=${length}: same bits everywhere, within the codec's bound of the float64 mean, exact total`, async () => {
          const cluster = makeCluster(n, length, 7000 * n + length + codec.length, { frameBytes: FRAME_BYTES });
          const results = fulfilled(await allReduceAll(cluster, 1, cluster.peers, cluster.ring, { codec, topkFraction: TOPK_FRACTION }));
          const first = results[0]!;
          const total = cluster.peers.reduce((s, p) => s + p.samples, 0);
          for (const r of results) {
            expect(r.mean.length).toBe(length);
            expect(sameBits(r.mean, first.mean)).toBe(true);
            expect(r.totalSamples).toBe(total);
            expect(r.stats.codec).toBe(codec);
          }
          const reference = float64Mean(cluster.peers);
          let bound: Float64Array;
          if (codec === "topk") {
            const topk = topkReference(cluster.peers, TOPK_FRACTION);
            bound = topk.bound;
            results.forEach((r, index) => expect(Array.from(r.residual!), `${cluster.peers[index]!.id}'s residual`).toEqual(Array.from(topk.residuals[index]!)));
          } else {
            bound = summingBound(codec, cluster.peers, FRAME_BYTES);
            for (const r of results) expect(r.residual).toBeUndefined();
          }
          for (let e = 0; e < length; e++) {
            expect(Math.abs(first.mean[e]! - reference[e]!), `element ${e}`).toBeLessThanOrEqual(bound[e]!);
          }
          closeAll(cluster);
        });
      }
    }
  }

  it("topk: the mean is exactly what the members sent, summed in ring order: Σ samples·(g − residual) / total", async () => {
    const cluster = makeCluster(5, 1000, 99, { frameBytes: 128 });
    const results = fulfilled(await allReduceAll(cluster, 1, cluster.peers, cluster.ring, { codec: "topk", topkFraction: 0.05 }));
    const total = results[0]!.totalSamples;
    // Ring order, as every member adds the blocks.
    const byPosition = cluster.ring.map((id) => cluster.peers.findIndex((p) => p.id === id));
    const sums = new Float32Array(1000);
    for (const index of byPosition) {
      const p = cluster.peers[index]!;
      const residual = results[index]!.residual!;
      for (let e = 0; e < 1000; e++) if (residual[e] === 0) sums[e] = sums[e]! + Math.fround(p.gradient[e]! * p.samples);
    }
    const expected = Float32Array.from(sums, (s) => s / total);
    expect(sameBits(results[0]!.mean, expected)).toBe(true);
    closeAll(cluster);
  });

  it("the sample count rides exact whatever the codec: counts no half or int8 could carry add up exactly", async () => {
    for (const codec of ["dense", "fp16", "int8", "topk"] as const) {
      for (const length of [0, 1, 50]) {
        const cluster = makeCluster(3, length, 4, { frameBytes: 64 });
        [8_388_607, 4_194_303, 12_345].forEach((samples, index) => (cluster.peers[index]!.samples = samples));
        const results = fulfilled(await allReduceAll(cluster, 1, cluster.peers, cluster.ring, { codec }));
        for (const r of results) expect(r.totalSamples, `${codec} length ${length}`).toBe(12_595_255);
        closeAll(cluster);
      }
    }
  });

  it("lossy codecs keep the sample-weighted sums of large gradients (beyond the half range) within bound", async () => {
    for (const codec of ["fp16", "int8"] as const) {
      const cluster = makeCluster(4, 500, 5, { frameBytes: 256 });
      for (const p of cluster.peers) {
        p.gradient.forEach((g, e) => (p.gradient[e] = Math.fround(g * 1e6)));
        p.samples *= 1000;
      }
      const results = fulfilled(await allReduceAll(cluster, 1, cluster.peers, cluster.ring, { codec }));
      const reference = float64Mean(cluster.peers);
      const bound = summingBound(codec, cluster.peers, 256);
      for (const r of results) expect(sameBits(r.mean, results[0]!.mean)).toBe(true);
      for (let e = 0; e < 500; e++) expect(Math.abs(results[0]!.mean[e]! - reference[e]!)).toBeLessThanOrEqual(bound[e]!);
      closeAll(cluster);
    }
  });
});

describe("bytes on the wire", () => {
  /** Bytes one member sends in a summing round: every chunk of its send segments, with 20-byte headers. */
  function summingBytes(codec: Exclude<Codec, "topk">, n: number, length: number, frameBytes: number, segments: number[]): number {
    const unit = ringChunkElements(CHUNK_CODECS[codec], frameBytes);
    const spans = partition(length + 1, n);
    let bytes = 0;
    for (const segment of segments) {
      const span = spans[segment]!;
      for (const offset of chunkOffsets(span.length, unit)) {
        const elements = Math.min(unit, span.length - offset);
        bytes += 20 + ringChunkBytes(CHUNK_CODECS[codec], elements, span.start + offset + elements === length + 1);
      }
    }
    return bytes;
  }

  it("stats count the encoded frames exactly; fp16 ≈ 1/2 and int8 ≈ 1/4 of dense, topk (N−1)·(4 + 8k) plus headers", async () => {
    const [n, length, frameBytes] = [4, 10_000, 1024];
    const sent: Record<Codec, number> = { dense: 0, fp16: 0, int8: 0, topk: 0 };
    for (const codec of ["dense", "fp16", "int8", "topk"] as const) {
      const cluster = makeCluster(n, length, 8, { frameBytes });
      const results = fulfilled(await allReduceAll(cluster, 1, cluster.peers, cluster.ring, { codec, topkFraction: 0.01 }));
      results.forEach((r, index) => {
        const position = cluster.ring.indexOf(cluster.peers[index]!.id);
        let expectedSent: number;
        let expectedReceived: number;
        if (codec === "topk") {
          const k = topkCount(length, 0.01);
          const perPeer = (n - 1) * (4 + 8 * k + 20 * topkChunkCount(k, topkPairsPerChunk(frameBytes)));
          [expectedSent, expectedReceived] = [perPeer, perPeer];
        } else {
          const steps = Array.from({ length: n - 1 }, (_, s) => s);
          const mod = (a: number): number => ((a % n) + n) % n;
          expectedSent = summingBytes(codec, n, length, frameBytes, [...steps.map((s) => mod(position - 1 - s)), ...steps.map((s) => mod(position - s))]);
          expectedReceived = summingBytes(codec, n, length, frameBytes, [...steps.map((s) => mod(position - 2 - s)), ...steps.map((s) => mod(position - 1 - s))]);
        }
        expect(r.stats.bytesSent, `${codec} sent`).toBe(expectedSent);
        expect(r.stats.bytesReceived, `${codec} received`).toBe(expectedReceived);
      });
      sent[codec] = results[0]!.stats.bytesSent;
      closeAll(cluster);
    }
    expect(sent.fp16 / sent.dense).toBeGreaterThan(0.49);
    expect(sent.fp16 / sent.dense).toBeLessThan(0.52);
    expect(sent.int8 / sent.dense).toBeGreaterThan(0.24);
    expect(sent.int8 / sent.dense).toBeLessThan(0.27);
    expect(sent.topk / sent.dense).toBeLessThan(0.05);
  });

  it("refuses a frameBytes too small for the codec, before the round starts", async () => {
    const cluster = makeCluster(2, 10, 1);
    const [a] = cluster.peers;
    const args = { ring: cluster.ring, gradient: a!.gradient, samples: 1, frameBytes: 4 };
    await expect(a!.reducer.allReduce({ ...args, attempt: 1, codec: "int8" })).rejects.toThrow(/cannot hold one int8 element/);
    await expect(a!.reducer.allReduce({ ...args, attempt: 2, codec: "topk" })).rejects.toThrow(/cannot hold the sample count and one topk pair/);
    await expect(a!.reducer.allReduce({ ...args, attempt: 3, codec: "topk", frameBytes: 64, topkFraction: 2 })).rejects.toThrow(/topkFraction/);
    await expect(a!.reducer.allReduce({ ...args, attempt: 4, codec: "bf16" as Codec, frameBytes: 64 })).rejects.toThrow(/unknown codec bf16/);
    expect(a!.reducer.counters().undecodableFrames).toBe(0);
    closeAll(cluster);
  });
});

describe("top-k with error feedback over rounds", () => {
  it("nothing is lost: Σ_t mean_t plus the members' weighted residuals is Σ_t of the dense means", async () => {
    const cluster: Cluster = makeCluster(3, 300, 17, { frameBytes: 256 });
    const feedback = cluster.peers.map(() => new ErrorFeedback(300));
    const total = cluster.peers.reduce((s, p) => s + p.samples, 0);
    const applied = new Float64Array(300);
    const rounds = 12;
    for (let attempt = 1; attempt <= rounds; attempt++) {
      const settled = await Promise.allSettled(
        cluster.peers.map((p, index) => p.reducer.allReduce({ attempt, ring: cluster.ring, gradient: feedback[index]!.correct(p.gradient), samples: p.samples, codec: "topk", topkFraction: 0.05 })),
      );
      const results = fulfilled(settled);
      results.forEach((r, index) => feedback[index]!.hold(attempt, r.residual!));
      for (let e = 0; e < 300; e++) applied[e] = applied[e]! + results[0]!.mean[e]!;
      feedback.forEach((f) => f.commit(attempt));
    }
    const dense = float64Mean(cluster.peers);
    let worst = 0;
    let scale = 0;
    for (let e = 0; e < 300; e++) {
      const carried = cluster.peers.reduce((s, p, index) => s + p.samples * feedback[index]!.residual()[e]!, 0) / total;
      worst = Math.max(worst, Math.abs(applied[e]! + carried - rounds * dense[e]!));
      scale = Math.max(scale, Math.abs(rounds * dense[e]!));
    }
    // Only float32 roundings separate them; without error feedback the gap would be the dropped mass.
    expect(worst / scale).toBeLessThan(1e-5);
    closeAll(cluster);
  });

  it("an aborted round's residual is discarded: the retry corrects with the residual from before it", async () => {
    const cluster = makeCluster(3, 200, 23, { frameBytes: 128, progressTimeoutMs: 200, ringStartTimeoutMs: 200, roundTimeoutMs: 2_000 });
    const feedback = cluster.peers.map(() => new ErrorFeedback(200));
    const run = (attempt: number): Promise<PromiseSettledResult<RoundResult>[]> =>
      Promise.allSettled(
        cluster.peers.map((p, index) => p.reducer.allReduce({ attempt, ring: cluster.ring, gradient: feedback[index]!.correct(p.gradient), samples: p.samples, codec: "topk", topkFraction: 0.05 })),
      );
    fulfilled(await run(1)).forEach((r, index) => feedback[index]!.hold(1, r.residual!));
    feedback.forEach((f) => f.commit(1));
    const before = feedback.map((f) => f.residual());
    // Attempt 2 completes on the wire but the coordinator aborts it (say, a member failed a later check).
    const aborted = fulfilled(await run(2));
    aborted.forEach((r, index) => feedback[index]!.hold(2, r.residual!));
    feedback.forEach((f) => f.discard(2));
    feedback.forEach((f, index) => expect(sameBits(f.residual(), before[index]!)).toBe(true));
    // Attempt 3 is the retry: corrected with the same residual, it reproduces attempt 2 bit for bit.
    const retried = fulfilled(await run(3));
    retried.forEach((r, index) => {
      expect(sameBits(r.mean, aborted[index]!.mean)).toBe(true);
      expect(sameBits(r.residual!, aborted[index]!.residual!)).toBe(true);
      feedback[index]!.hold(3, r.residual!);
    });
    expect(() => feedback[0]!.commit(2)).toThrow(/cannot commit attempt 2/);
    feedback.forEach((f) => f.commit(3));
    feedback.forEach((f, index) => expect(sameBits(f.residual(), retried[index]!.residual!)).toBe(true));
    closeAll(cluster);
  });
});
