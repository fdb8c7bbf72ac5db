import { encodeAbortFrame, encodeDataFrame, FRAME_CODEC_IDS, FRAME_HEADER_BYTES, FRAME_VERSION, FrameKind, type Aggregation } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import {
  AllReduceError,
  centeredClip,
  createDirectAllReducer,
  defaultTrim,
  partition,
  systemClock,
  trimmedMean,
  unweightedMean,
  type DirectAllReducer,
  type DirectOptions,
  type DirectRoundResult,
  type Transport,
} from "../src/index.ts";
import { sameBits } from "./harness.ts";
import { createMemoryNetwork, seededRandom, type MemoryNetwork } from "./memory-network.ts";

// ---------- harness ----------

type Member = { id: string; reducer: DirectAllReducer; gradient: Float32Array };
type Cluster = { network: MemoryNetwork; peers: Member[]; members: string[] };

const AGGREGATIONS: Aggregation[] = ["mean", "trimmed-mean", "centered-clip"];
/** Short timeouts that keep their relations: result > start + progress, round > start + result. */
const FAST: Partial<DirectOptions> = { frameBytes: 64, progressTimeoutMs: 150, startTimeoutMs: 150, resultTimeoutMs: 400, roundTimeoutMs: 3_000 };

function makeCluster(
  n: number,
  length: number,
  seed: number,
  options: Partial<DirectOptions> = {},
  wrap: (id: string, transport: Transport) => Transport = (_, t) => t,
): Cluster {
  const network = createMemoryNetwork(seed);
  const random = seededRandom(seed ^ 0x5eed);
  const peers: Member[] = [];
  for (let k = 0; k < n; k++) {
    const id = `peer-${k}`;
    const gradient = new Float32Array(length);
    for (let e = 0; e < length; e++) gradient[e] = (random() - 0.5) * 10 ** Math.floor(random() * 6 - 3);
    peers.push({ id, gradient, reducer: createDirectAllReducer({ transport: wrap(id, network.transport(id)), options }) });
  }
  // Plan order differs from creation order, as the coordinator's would.
  return { network, peers, members: peers.map((p) => p.id).reverse() };
}

function runAll(cluster: Cluster, attempt: number, aggregation: Aggregation, peers = cluster.peers, members = cluster.members): Promise<PromiseSettledResult<DirectRoundResult>[]> {
  return Promise.allSettled(peers.map((p) => p.reducer.allReduce({ attempt, plan: { members, aggregation }, gradient: p.gradient })));
}

function fulfilled(settled: PromiseSettledResult<DirectRoundResult>[]): DirectRoundResult[] {
  return settled.map((s) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  });
}

function rejected(settled: PromiseSettledResult<DirectRoundResult>[]): AllReduceError[] {
  return settled.map((s) => {
    if (s.status === "fulfilled") throw new Error("expected the round to fail, it succeeded");
    expect(s.reason).toBeInstanceOf(AllReduceError);
    return s.reason as AllReduceError;
  });
}

/** The aggregator applied to each shard of the members' vectors (plan order), concatenated. */
function reference(cluster: Cluster, aggregation: Aggregation, members = cluster.members): Float32Array {
  const byId = new Map(cluster.peers.map((p) => [p.id, p.gradient]));
  const length = cluster.peers[0]!.gradient.length;
  const out = new Float32Array(length);
  for (const span of partition(length, members.length)) {
    const rows = members.map((id) => byId.get(id)!.subarray(span.start, span.start + span.length));
    const value =
      aggregation === "mean" ? unweightedMean(rows).value : aggregation === "trimmed-mean" ? trimmedMean(rows, defaultTrim(rows.length)).value : centeredClip(rows).value;
    out.set(value, span.start);
  }
  return out;
}

function closeAll(cluster: Cluster): void {
  for (const p of cluster.peers) p.reducer.close();
}

const HEADER = FRAME_HEADER_BYTES;
const frameBytesOf = (elements: number, chunk: number): number => elements * 4 + HEADER * Math.ceil(elements / chunk);

// ---------- correctness ----------

describe("direct all-reduce over a seeded, reordering in-memory network", () => {
  for (let n = 1; n <= 8; n++) {
    for (const length of [0, 1, Math.max(0, n - 1), 3 * n + 1, 4099]) {
      it(`N=${n}, length=${length}: bit-identical on every member, equal to each aggregator applied shard by shard`, async () => {
        for (const [a, aggregation] of AGGREGATIONS.entries()) {
          const cluster = makeCluster(n, length, 1000 * n + length + a, { frameBytes: 64 });
          const results = fulfilled(await runAll(cluster, 1, aggregation));
          const expected = reference(cluster, aggregation);
          const spans = partition(length, n);
          for (const r of results) {
            expect(r.mean.length).toBe(length);
            expect(sameBits(r.mean, expected)).toBe(true);
          }
          cluster.peers.forEach((peer, index) => {
            const r = results[index]!;
            const position = cluster.members.indexOf(peer.id);
            const own = r.stats.ownShard;
            expect(own).toMatchObject({ index: position, start: spans[position]!.start, length: spans[position]!.length, aggregation });
            expect(own.contributors.map((c) => c.peer)).toEqual(cluster.members);
            // Exact traffic: scatter every other shard to its owner, then this shard to every other member.
            const mine = spans[position]!.length;
            const others = spans.filter((_, i) => i !== position).reduce((s, span) => s + frameBytesOf(span.length, 16), 0);
            expect(r.stats.bytesSent).toBe(others + (n - 1) * frameBytesOf(mine, 16));
            expect(r.stats.bytesReceived).toBe((n - 1) * frameBytesOf(mine, 16) + others);
          });
          closeAll(cluster);
        }
      });
    }
  }

  it("N=8, length=1e6, default 64 KiB frames, centered-clip: bit-identical, and (N−1)/N·S bytes out per phase like the ring", async () => {
    const cluster = makeCluster(8, 1_000_000, 42);
    const results = fulfilled(await runAll(cluster, 7, "centered-clip"));
    for (const r of results) expect(sameBits(r.mean, results[0]!.mean)).toBe(true);
    expect(sameBits(results[0]!.mean, reference(cluster, "centered-clip"))).toBe(true);
    const payloadBytes = (1_000_000 * 4 * 2 * 7) / 8;
    for (const r of results) {
      expect(r.stats.bytesSent / payloadBytes).toBeLessThan(1.002);
      expect(r.stats.bytesSent / payloadBytes).toBeGreaterThanOrEqual(0.999);
    }
    closeAll(cluster);
  });

  it("counts every member once: no sample weights, so a claim cannot buy weight", async () => {
    const cluster = makeCluster(3, 1, 5);
    cluster.peers[0]!.gradient.set([1]);
    cluster.peers[1]!.gradient.set([4]);
    cluster.peers[2]!.gradient.set([100]);
    const [mean] = fulfilled(await runAll(cluster, 1, "mean"));
    expect(Array.from(mean!.mean)).toEqual([35]);
    const [median] = fulfilled(await runAll(cluster, 2, "trimmed-mean"));
    expect(Array.from(median!.mean)).toEqual([4]);
    closeAll(cluster);
  });

  it("runs many rounds on one transport and leaves the callers' gradients untouched", async () => {
    const cluster = makeCluster(4, 300, 9, { frameBytes: 128 });
    const before = cluster.peers.map((p) => p.gradient.slice());
    for (let attempt = 1; attempt <= 6; attempt++) {
      const aggregation = AGGREGATIONS[attempt % 3]!;
      const results = fulfilled(await runAll(cluster, attempt * 10, aggregation));
      expect(sameBits(results[0]!.mean, reference(cluster, aggregation))).toBe(true);
    }
    cluster.peers.forEach((p, k) => expect(p.gradient).toEqual(before[k]));
    closeAll(cluster);
  });

  it("holds frames of a round a member has not started yet (a faster member ran ahead)", async () => {
    const cluster = makeCluster(3, 1000, 11, { frameBytes: 64 });
    const [a, b, c] = cluster.peers as [Member, Member, Member];
    const plan = { members: cluster.members, aggregation: "centered-clip" as const };
    const early = [a, b].map((p) => p.reducer.allReduce({ attempt: 1, plan, gradient: p.gradient }));
    await cluster.network.flush();
    expect(c.reducer.counters().bufferedFutureBytes).toBeGreaterThan(0);
    const late = c.reducer.allReduce({ attempt: 1, plan, gradient: c.gradient });
    const results = await Promise.all([...early, late]);
    expect(sameBits(results[2]!.mean, results[0]!.mean)).toBe(true);
    expect(c.reducer.counters().bufferedFutureBytes).toBe(0);
    closeAll(cluster);
  });

  it("refuses a reused round id, a plan without itself, a repeated member, an unknown aggregation, an impossible trim", async () => {
    const cluster = makeCluster(2, 4, 3);
    const [a] = cluster.peers;
    const plan = (members: string[], aggregation: Aggregation = "mean") => ({ members, aggregation });
    fulfilled(await runAll(cluster, 5, "mean"));
    await expect(a!.reducer.allReduce({ attempt: 5, plan: plan(cluster.members), gradient: a!.gradient })).rejects.toThrow(/attempt id 5/);
    await expect(a!.reducer.allReduce({ attempt: 6, plan: plan(["x", "y"]), gradient: a!.gradient })).rejects.toThrow(/does not contain/);
    await expect(a!.reducer.allReduce({ attempt: 7, plan: plan([a!.id, a!.id]), gradient: a!.gradient })).rejects.toThrow(/repeated/);
    await expect(a!.reducer.allReduce({ attempt: 8, plan: plan(cluster.members, "median" as Aggregation), gradient: a!.gradient })).rejects.toThrow(/unknown aggregation/);
    const trimmed = createDirectAllReducer({ transport: createMemoryNetwork(1).transport("solo"), options: { trim: 1 } });
    await expect(trimmed.allReduce({ attempt: 1, plan: plan(["solo", "other"], "trimmed-mean"), gradient: new Float32Array(2) })).rejects.toThrow(/2\*trim < N/);
    trimmed.close();
    closeAll(cluster);
  });

  it("rejects options whose timeouts contradict each other", () => {
    const make = (options: Partial<DirectOptions>) => () => createDirectAllReducer({ transport: createMemoryNetwork(1).transport("x"), options });
    expect(make({ startTimeoutMs: 100, progressTimeoutMs: 200 })).toThrow(/at least progressTimeoutMs/);
    expect(make({ ...FAST, resultTimeoutMs: 300 })).toThrow(/resultTimeoutMs .* must exceed startTimeoutMs \+ progressTimeoutMs/);
    expect(make({ ...FAST, roundTimeoutMs: 500 })).toThrow(/roundTimeoutMs .* must exceed startTimeoutMs \+ resultTimeoutMs/);
    expect(make({ frameBytes: 300 * 1024 })).toThrow(/frameBytes/);
    expect(make({ clipIterations: 1.5 })).toThrow(/clipIterations/);
    expect(make({ tauFactor: -1 })).toThrow(/tauFactor/);
    expect(make({ trim: -1 })).toThrow(/trim/);
  });
});

// ---------- failures ----------

describe("a member dying at every point of the round", () => {
  for (const n of [2, 3, 4]) {
    it(`N=${n}: every survivor fails with a typed error naming a member, or gets the complete result; then a new plan works`, async () => {
      const probe = makeCluster(n, 100, 77, FAST);
      const victim = "peer-1";
      const expected = fulfilled(await runAll(probe, 1, "centered-clip"))[0]!.mean;
      const framesPerPeer = probe.network.framesSent(victim);
      closeAll(probe);
      expect(framesPerPeer).toBeGreaterThan(2 * (n - 1)); // several chunks per shard, or the test is weak

      for (let k = 0; k <= framesPerPeer; k++) {
        const cluster = makeCluster(n, 100, 77, FAST);
        cluster.network.killAfterFrames(victim, k);
        const settled = await runAll(cluster, 1, "centered-clip");
        settled.forEach((s, index) => {
          if (cluster.peers[index]!.id === victim) return;
          if (s.status === "fulfilled") {
            // Only possible once it had everything it needed: then the result must be complete.
            expect(sameBits(s.value.mean, expected)).toBe(true);
          } else {
            expect(s.reason).toBeInstanceOf(AllReduceError);
            expect((s.reason as AllReduceError).suspect).toBe(victim);
            expect(["peer-gone", "aborted", "timeout"]).toContain((s.reason as AllReduceError).code);
          }
        });
        if (k < framesPerPeer) expect(settled.some((s, index) => cluster.peers[index]!.id !== victim && s.status === "rejected")).toBe(true);
        await cluster.network.flush();
        const survivors = cluster.peers.filter((p) => p.id !== victim);
        const members = cluster.members.filter((id) => id !== victim);
        const again = fulfilled(await runAll(cluster, 2, "centered-clip", survivors, members));
        for (const r of again) expect(sameBits(r.mean, reference(cluster, "centered-clip", members))).toBe(true);
        closeAll(cluster);
      }
    });
  }

  it("a member entering late (still computing) is waited for up to startTimeoutMs, not progressTimeoutMs", async () => {
    const cluster = makeCluster(3, 50, 3, { ...FAST, startTimeoutMs: 1_000, resultTimeoutMs: 1_500, roundTimeoutMs: 5_000 });
    const [a, b, c] = cluster.peers;
    const plan = { members: cluster.members, aggregation: "trimmed-mean" as const };
    const early = [a!, b!].map((p) => p.reducer.allReduce({ attempt: 1, plan, gradient: p.gradient }));
    await new Promise((resolve) => systemClock().setTimeout(() => resolve(undefined), 400)); // > progressTimeoutMs, < startTimeoutMs
    const late = c!.reducer.allReduce({ attempt: 1, plan, gradient: c!.gradient });
    const results = await Promise.all([...early, late]);
    expect(sameBits(results[0]!.mean, results[2]!.mean)).toBe(true);
    closeAll(cluster);
  });

  it("a hung member (silent, links open) is named by every survivor within startTimeoutMs", async () => {
    const cluster = makeCluster(4, 500, 3, FAST);
    const hung = cluster.members[2]!;
    cluster.network.silence(hung);
    const started = Date.now();
    const settled = await runAll(cluster, 1, "centered-clip");
    const errors = rejected(settled.filter((_, index) => cluster.peers[index]!.id !== hung));
    expect(Date.now() - started).toBeLessThan(FAST.startTimeoutMs! * 4);
    for (const e of errors) {
      expect(["timeout", "aborted"]).toContain(e.code);
      expect(e.suspect).toBe(hung);
    }
    expect(errors.some((e) => e.code === "timeout")).toBe(true);
    closeAll(cluster);
  });

  it("an owner waiting on a contributor that skips it: everyone names the contributor, not the waiting owner", async () => {
    // peer-3 sends its contribution to everyone but peer-1: peer-1 cannot aggregate its shard, times
    // out on peer-3, and its abort reaches the others before their resultTimeoutMs on peer-1 would.
    const skipper = "peer-3";
    const starved = "peer-1";
    const cluster = makeCluster(4, 400, 5, FAST, (id, transport) =>
      id !== skipper
        ? transport
        : {
            ...transport,
            self: transport.self,
            send: (to, bytes) => (to === starved && bytes[1] === FrameKind.DirectScatter ? Promise.resolve() : transport.send(to, bytes)),
          },
    );
    const settled = await runAll(cluster, 1, "trimmed-mean");
    const errors = rejected(settled.filter((_, index) => cluster.peers[index]!.id !== skipper));
    for (const e of errors) expect(e.suspect).toBe(skipper);
    const atStarved = errors[cluster.peers.filter((p) => p.id !== skipper).findIndex((p) => p.id === starved)]!;
    expect(atStarved.code).toBe("timeout");
    expect(atStarved.message).toMatch(/contribution to shard/);
    closeAll(cluster);
  });

  it("a killed member is named by everyone via the link and the abort notices, fast (no timeout needed)", async () => {
    const cluster = makeCluster(5, 2000, 8, { ...FAST, progressTimeoutMs: 2_000, startTimeoutMs: 2_000, resultTimeoutMs: 5_000, roundTimeoutMs: 10_000 });
    const victim = cluster.members[1]!;
    cluster.network.killAfterFrames(victim, 3);
    const started = Date.now();
    const settled = await runAll(cluster, 1, "mean");
    const errors = rejected(settled.filter((_, index) => cluster.peers[index]!.id !== victim));
    expect(Date.now() - started).toBeLessThan(1_000);
    for (const e of errors) expect(e.suspect).toBe(victim);
    closeAll(cluster);
  });

  it("a member's own non-finite gradient fails the round everywhere with bad-input naming it", async () => {
    const cluster = makeCluster(3, 10, 6, FAST);
    cluster.peers[0]!.gradient[4] = Number.NaN;
    const errors = rejected(await runAll(cluster, 1, "centered-clip"));
    expect(errors[0]!.code).toBe("bad-input");
    for (const e of errors) expect(e.suspect).toBe("peer-0");
    closeAll(cluster);
  });
});

/** A copy of a frame with its codec byte (header offset 16) rewritten. */
function withCodecByte(frame: Uint8Array<ArrayBuffer>, codec: number): Uint8Array<ArrayBuffer> {
  const copy = frame.slice();
  copy[16] = codec;
  return copy;
}

describe("bad frames are rejected with an error naming the sender", () => {
  // N=3, 100 elements: shards of 34, 33, 33 in 16-element chunks. The target is members[1] (peer-1), owner of shard 1
  // (33 elements: chunks at 0, 16, 32); the sender is members[0] (peer-2), owner of shard 0 (34 elements).
  const scatter = (segment: number, offset: number, payload: Float32Array) => encodeDataFrame({ kind: FrameKind.DirectScatter, attempt: 1, step: 0, segment, offset }, payload);
  const gather = (segment: number, offset: number, payload: Float32Array) => encodeDataFrame({ kind: FrameKind.DirectGather, attempt: 1, step: 0, segment, offset }, payload);
  const cases: { name: string; from?: string; frames: () => Uint8Array<ArrayBuffer>[]; pattern: RegExp; code?: string }[] = [
    { name: "a ring frame kind", frames: () => [encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 1, offset: 0 }, new Float32Array(16))], pattern: /kind 1 belongs to the ring, not the direct layout/ },
    { name: "a contribution to a shard this member does not own", frames: () => [scatter(2, 0, new Float32Array(16))], pattern: /shard 2, but this member owns shard 1/ },
    { name: "a gather frame for a shard the sender does not own", frames: () => [gather(1, 0, new Float32Array(16))], pattern: /shard 1, but peer-2 owns shard 0/ },
    { name: "wrong length", frames: () => [scatter(1, 0, new Float32Array(3))], pattern: /3 elements, expected 16/ },
    { name: "wrong length of the last chunk", frames: () => [scatter(1, 32, new Float32Array(16))], pattern: /16 elements, expected 1/ },
    { name: "offset not a chunk start", frames: () => [scatter(1, 5, new Float32Array(16))], pattern: /offset 5 is not a chunk start/ },
    { name: "offset past the shard", frames: () => [gather(0, 48, new Float32Array(16))], pattern: /offset 48 is not a chunk start inside shard 0/ },
    { name: "duplicate", frames: () => [scatter(1, 16, new Float32Array(16)), scatter(1, 16, new Float32Array(16))], pattern: /duplicate scatter chunk/ },
    { name: "NaN", frames: () => [scatter(1, 16, new Float32Array(16).fill(Number.NaN))], pattern: /non-finite value NaN at element 16/ },
    { name: "Infinity in a gather frame", frames: () => [gather(0, 0, new Float32Array(16).fill(-Infinity))], pattern: /non-finite/ },
    { name: "undecodable bytes", frames: () => [new Uint8Array([9, 9, 9])], pattern: /shorter than/ },
    { name: "a direct frame with a step", frames: () => [Uint8Array.from([FRAME_VERSION, 4, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, FRAME_CODEC_IDS.dense, 0, 0, 0])], pattern: /reserved/ },
    { name: "a direct frame with a compressed codec", frames: () => [withCodecByte(scatter(1, 0, new Float32Array(16)), FRAME_CODEC_IDS.fp16)], pattern: /codec fp16; the direct layout is float32 \(dense\) only/ },
    { name: "a direct frame with an unknown codec", frames: () => [withCodecByte(gather(0, 0, new Float32Array(16)), 77)], pattern: /unknown codec 77/ },
    { name: "a sender not in the plan", from: "mallory", frames: () => [scatter(1, 0, new Float32Array(16))], pattern: /mallory, which is not a member/ },
  ];
  for (const { name, from, frames, pattern } of cases) {
    it(name, async () => {
      const cluster = makeCluster(3, 100, 21, FAST);
      const [sender, target] = [cluster.members[0]!, cluster.members[1]!];
      // Only the target runs, so the forged frames are the only data it sees: no race with real ones.
      const pending = runAll(cluster, 1, "centered-clip", cluster.peers.filter((p) => p.id === target));
      for (const bytes of frames()) cluster.network.inject(from ?? sender, target, bytes);
      const [error] = rejected(await pending);
      expect(error!.code).toBe("bad-frame");
      expect(error!.suspect).toBe(from ?? sender);
      expect(error!.message).toMatch(pattern);
      closeAll(cluster);
    });
  }

  it("the violation is propagated: every member fails naming the sender", async () => {
    const cluster = makeCluster(4, 400, 21, FAST);
    const [liar, target] = [cluster.members[0]!, cluster.members[2]!];
    const pending = runAll(cluster, 1, "mean");
    cluster.network.inject(liar, target, encodeDataFrame({ kind: FrameKind.DirectScatter, attempt: 1, step: 0, segment: 0, offset: 0 }, new Float32Array(16)));
    const errors = rejected(await pending);
    for (const e of errors.filter((_, index) => cluster.peers[index]!.id !== liar)) expect(e.suspect).toBe(liar);
    closeAll(cluster);
  });

  it("an abort from a stranger is ignored; one from a member fails the round naming its suspect", async () => {
    const cluster = makeCluster(2, 40, 6, FAST);
    const [a, b] = cluster.peers;
    const pending = runAll(cluster, 1, "mean", [b!]);
    cluster.network.inject("mallory", b!.id, encodeAbortFrame({ attempt: 1, suspect: a!.id, reason: "lies" }));
    await cluster.network.flush();
    cluster.network.inject(a!.id, b!.id, encodeAbortFrame({ attempt: 1, suspect: "peer-9", reason: "test" }));
    const [error] = rejected(await pending);
    expect(error).toMatchObject({ code: "aborted", suspect: "peer-9" });
    closeAll(cluster);
  });
});

describe("round bookkeeping", () => {
  it("frames of an earlier round are ignored and counted, never applied", async () => {
    const cluster = makeCluster(2, 10, 6, FAST);
    fulfilled(await runAll(cluster, 5, "mean"));
    const [a, b] = cluster.peers;
    cluster.network.inject(a!.id, b!.id, encodeDataFrame({ kind: FrameKind.DirectGather, attempt: 4, step: 0, segment: 0, offset: 0 }, new Float32Array(5).fill(1e9)));
    await cluster.network.flush();
    expect(b!.reducer.counters().staleFrames).toBe(1);
    const results = fulfilled(await runAll(cluster, 6, "mean"));
    expect(sameBits(results[1]!.mean, reference(cluster, "mean"))).toBe(true);
    closeAll(cluster);
  });

  it("an abort for a round not started yet fails that round as soon as it starts", async () => {
    const cluster = makeCluster(3, 10, 6, FAST);
    const [a, b] = cluster.peers;
    cluster.network.inject(a!.id, b!.id, encodeAbortFrame({ attempt: 3, suspect: "peer-2", reason: "test" }));
    await cluster.network.flush();
    await expect(b!.reducer.allReduce({ attempt: 3, plan: { members: cluster.members, aggregation: "mean" }, gradient: b!.gradient })).rejects.toMatchObject({
      code: "aborted",
      suspect: "peer-2",
    });
    closeAll(cluster);
  });

  it("more frames ahead of a round than maxBufferedFutureBytes name the sender when that round starts", async () => {
    const cluster = makeCluster(2, 100, 6, { ...FAST, maxBufferedFutureBytes: 100 });
    const [a, b] = cluster.peers;
    for (let offset = 0; offset < 48; offset += 16) {
      cluster.network.inject(a!.id, b!.id, encodeDataFrame({ kind: FrameKind.DirectScatter, attempt: 2, step: 0, segment: 1, offset }, new Float32Array(16)));
    }
    await cluster.network.flush();
    const [error] = rejected(await runAll(cluster, 2, "mean", [b!]));
    expect(error).toMatchObject({ code: "bad-frame", suspect: a!.id });
    closeAll(cluster);
  });

  it("close() fails the running round with closed; abortRound fails it with aborted and makes a future id stale", async () => {
    const cluster = makeCluster(2, 10, 6, { ...FAST, startTimeoutMs: 5_000, resultTimeoutMs: 6_000, roundTimeoutMs: 20_000 });
    const [a, b] = cluster.peers;
    const plan = { members: cluster.members, aggregation: "mean" as const };
    const closing = a!.reducer.allReduce({ attempt: 1, plan, gradient: a!.gradient });
    a!.reducer.close();
    await expect(closing).rejects.toMatchObject({ code: "closed" });
    const aborting = b!.reducer.allReduce({ attempt: 1, plan, gradient: b!.gradient });
    b!.reducer.abortRound(1, "coordinator aborted attempt 1");
    await expect(aborting).rejects.toMatchObject({ code: "aborted", suspect: undefined });
    b!.reducer.abortRound(3, "aborted before it started");
    await expect(b!.reducer.allReduce({ attempt: 3, plan, gradient: b!.gradient })).rejects.toThrow(/attempt id 3/);
    closeAll(cluster);
  });
});

// ---------- dishonest members ----------

function normal(random: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
}
const norm = (x: ArrayLike<number>): number => {
  let s = 0;
  for (let e = 0; e < x.length; e++) s += x[e]! * x[e]!;
  return Math.sqrt(s);
};

type Attack = "x1e4" | "sign-flip" | "3e38" | "noise";

function attackVector(attack: Attack, own: Float32Array, random: () => number): Float32Array {
  switch (attack) {
    case "x1e4":
      return own.map((x) => x * 1e4);
    case "sign-flip":
      return own.map((x) => -x);
    case "3e38":
      return own.map(() => 3e38);
    case "noise": {
      const noise = Float64Array.from(own, () => normal(random));
      const scale = norm(own) / norm(noise);
      return Float32Array.from(noise, (x) => x * scale);
    }
  }
}

/** Relative error of `result` to the mean of the honest vectors. */
function relativeError(result: Float32Array, honest: Float32Array[]): number {
  let diff = 0;
  let size = 0;
  for (let e = 0; e < result.length; e++) {
    let mean = 0;
    for (const h of honest) mean += h[e]! / honest.length;
    diff += (result[e]! - mean) ** 2;
    size += mean * mean;
  }
  return Math.sqrt(diff / size);
}

describe("dishonest members in the network: robust aggregation holds, the mean does not", () => {
  // Honest members hold g + noise with ‖noise‖ = 0.1·‖g‖·U(0.5, 1.5); bounds as in robust.test.ts.
  const RATIO = 0.1;
  for (const n of [5, 7]) {
    const f = Math.floor((n - 1) / 2);
    it(`N=${n}, ${f} attackers, every attack: centered-clip and trimmed-mean stay near the honest mean, every owner flags the attackers`, async () => {
      for (const attack of ["x1e4", "sign-flip", "3e38", "noise"] as Attack[]) {
        const random = seededRandom(n * 100 + attack.length);
        const cluster = makeCluster(n, 200 * n, n + attack.length, { frameBytes: 256 });
        const g = Float64Array.from({ length: 200 * n }, () => normal(random));
        const honest: Float32Array[] = [];
        // The first members of the plan are the attackers, so attackers own shards too.
        cluster.members.forEach((id, position) => {
          const peer = cluster.peers.find((p) => p.id === id)!;
          const noise = Float64Array.from(g, () => normal(random));
          const scale = ((0.5 + random()) * RATIO * norm(g)) / norm(noise);
          const mine = Float32Array.from(g, (x, e) => x + scale * noise[e]!);
          if (position < f) peer.gradient = attackVector(attack, mine, random);
          else {
            peer.gradient = mine;
            honest.push(mine);
          }
        });
        const attackers = new Set(cluster.members.slice(0, f));
        for (const [attempt, aggregation] of AGGREGATIONS.entries()) {
          const results = fulfilled(await runAll(cluster, attempt + 1, aggregation));
          for (const r of results) expect(sameBits(r.mean, results[0]!.mean)).toBe(true);
          const error = relativeError(results[0]!.mean, honest);
          if (aggregation === "centered-clip") expect(error).toBeLessThanOrEqual(3.5 * RATIO);
          if (aggregation === "trimmed-mean") expect(error).toBeLessThanOrEqual(1.8 * RATIO);
          if (aggregation === "mean" && attack === "x1e4") expect(error).toBeGreaterThan(1000);
          if (aggregation === "mean" && attack === "3e38") expect(error).toBeGreaterThan(1e36);
          if (aggregation === "mean" && attack === "sign-flip") expect(error).toBeGreaterThan((2 * f) / n - 2 * RATIO);
          if (aggregation !== "mean") {
            // What each owner reports to the coordinator: exactly the attackers are flagged, on every shard.
            for (const r of results) {
              const flagged = r.stats.ownShard.contributors.filter((c) => c.clipped).map((c) => c.peer);
              expect(new Set(flagged)).toEqual(attackers);
            }
          }
        }
        closeAll(cluster);
      }
    });
  }
});
