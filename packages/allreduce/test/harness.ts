import { expect } from "vitest";
import { AllReduceError, createAllReducer, type AllReducer, type AllReduceOptions, type RoundArgs, type RoundResult } from "../src/index.ts";
import { mulberry32 } from "@crowdtrain/protocol";
import { createMemoryNetwork, type MemoryNetwork } from "./memory-network.ts";

export const FLOAT32_UNIT_ROUNDOFF = 2 ** -24;

export type Peer = { id: string; reducer: AllReducer; gradient: Float32Array; samples: number };

export type Cluster = { network: MemoryNetwork; peers: Peer[]; ring: string[] };

/** N peers on a seeded in-memory network, each with a random gradient and sample count. */
export function makeCluster(n: number, length: number, seed: number, options: Partial<AllReduceOptions> = {}): Cluster {
  const network = createMemoryNetwork(seed);
  const random = mulberry32(seed ^ 0x5eed);
  const peers: Peer[] = [];
  for (let k = 0; k < n; k++) {
    const id = `peer-${k}`;
    const gradient = new Float32Array(length);
    // Mixed magnitudes and signs, so rounding and cancellation both happen.
    for (let e = 0; e < length; e++) gradient[e] = (random() - 0.5) * 10 ** Math.floor(random() * 6 - 3);
    const samples = 1 + Math.floor(random() * 64);
    peers.push({ id, gradient, samples, reducer: createAllReducer({ transport: network.transport(id), options }) });
  }
  // Ring order differs from creation order, as the coordinator's would.
  const ring = peers.map((p) => p.id).sort(() => 0).reverse();
  return { network, peers, ring };
}

/** The round's wire format, passed to every member alike. */
export type CodecArgs = Pick<RoundArgs, "codec" | "topkFraction">;

export function allReduceAll(cluster: Cluster, attempt: number, peers = cluster.peers, ring = cluster.ring, codec: CodecArgs = {}): Promise<PromiseSettledResult<RoundResult>[]> {
  return Promise.allSettled(peers.map((p) => p.reducer.allReduce({ attempt, ring, gradient: p.gradient, samples: p.samples, ...codec })));
}

/** Σ n_k g_k / Σ n_k in float64, and the worst-case float32 error bound for each element. */
export function reference(peers: Peer[]): { mean: Float64Array; bound: Float64Array } {
  const length = peers[0]?.gradient.length ?? 0;
  const n = peers.length;
  const total = peers.reduce((sum, p) => sum + p.samples, 0);
  const mean = new Float64Array(length);
  const bound = new Float64Array(length);
  const u = FLOAT32_UNIT_ROUNDOFF;
  // Each product n_k*g_k rounds once and the ring adds N terms: |error of sum| <= gamma_N * sum |n_k g_k|;
  // the final division adds one more rounding relative to the result.
  const gamma = (n * u) / (1 - n * u);
  for (let e = 0; e < length; e++) {
    let sum = 0;
    let magnitude = 0;
    for (const p of peers) {
      const term = p.samples * (p.gradient[e] as number);
      sum += term;
      magnitude += Math.abs(term);
    }
    mean[e] = sum / total;
    bound[e] = (gamma * magnitude * (1 + u)) / total + u * Math.abs(sum / total);
  }
  return { mean, bound };
}

export function closeAll(cluster: Cluster): void {
  for (const p of cluster.peers) p.reducer.close();
}

/** Bit-for-bit equality of two float32 vectors (NaN payloads and signed zeros included). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return false;
  return true;
}

/** Every settled round as its AllReduceError; a round that succeeded fails the test. */
export function errorsOf(settled: PromiseSettledResult<RoundResult>[]): AllReduceError[] {
  return settled.map((s) => {
    if (s.status === "fulfilled") throw new Error("expected the round to fail, it succeeded");
    expect(s.reason).toBeInstanceOf(AllReduceError);
    return s.reason as AllReduceError;
  });
}
