import { encodeCodedFrame, encodeDataFrame, FRAME_HEADER_BYTES, FrameKind, RingStage } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { AllReduceError, CHUNK_CODECS, partition, ringChunkElements, ringSumErrorBound, type AllReduceOptions, type RoundResult, type TorusRoundArgs } from "../src/index.ts";
import { closeAll, errorsOf, makeCluster, reference, sameBits, type Cluster, type Peer } from "./harness.ts";
import { seededRandom } from "./memory-network.ts";

const FAST: Partial<AllReduceOptions> = { frameBytes: 64, progressTimeoutMs: 150, hopMs: 0, ringStartTimeoutMs: 150, roundTimeoutMs: 3_000 };

/** A float32 chunk of an attached member's contribution (stage TorusAttach, reduce-scatter kind). */
const attachChunk = (values: Float32Array): Uint8Array<ArrayBuffer> => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, stage: RingStage.TorusAttach }, values);

/** The cluster's peers as a grid of `columns` members per row, in ring order. */
function gridOf(ids: readonly string[], columns: number): string[][] {
  const rows: string[][] = [];
  for (let at = 0; at < ids.length; at += columns) rows.push(ids.slice(at, at + columns));
  return rows;
}

function torusAll(cluster: Cluster, attempt: number, rows: string[][], peers: Peer[] = cluster.peers, extra: Partial<TorusRoundArgs> = {}): Promise<PromiseSettledResult<RoundResult>[]> {
  return Promise.allSettled(peers.map((p) => p.reducer.allReduceTorus({ attempt, rows, gradient: p.gradient, samples: p.samples, ...extra })));
}

function valuesOf(settled: PromiseSettledResult<RoundResult>[]): RoundResult[] {
  return settled.map((s) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  });
}

/** Payload elements a member at (row r, column c) sends: its row's reduce-scatter, its column's all-reduce, its row's all-gather. */
function expectedPayloadElements(vector: number, columns: number, rows: number, r: number, c: number): number {
  const segments = partition(vector, columns);
  const own = segments[c]!.length;
  const subs = partition(own, rows);
  const rowScatter = vector - own;
  const column = rows === 1 ? 0 : own - subs[r]!.length + own - subs[(r + 1) % rows]!.length;
  const rowGather = columns === 1 ? 0 : vector - segments[(c + 1) % columns]!.length;
  return rowScatter + column + rowGather;
}

describe("torus all-reduce: the mean, bit-identical on every member", () => {
  // [columns, rows]: degenerate grids (one row, one column) and square and oblong ones up to 8×8.
  const grids: [number, number][] = [[1, 1], [3, 1], [1, 3], [2, 2], [3, 2], [4, 3], [4, 4], [8, 8]];
  for (const [columns, rows] of grids) {
    for (const length of [0, 1, 7, 100, 1000]) {
      it(`${columns}x${rows}, ${length} elements: equal to the float64 mean within the float32 bound, same bits everywhere, exact bytes`, async () => {
        const n = columns * rows;
        // Default timeouts: nothing fails here, and 64 members share one event loop.
        const cluster = makeCluster(n, length, 1000 * columns + 10 * rows + length, { frameBytes: 256 });
        const grid = gridOf(cluster.ring, columns);
        const results = valuesOf(await torusAll(cluster, 1, grid));
        const { mean, bound } = reference(cluster.peers);
        const total = cluster.peers.reduce((sum, p) => sum + p.samples, 0);
        for (const [index, result] of results.entries()) {
          expect(sameBits(result.mean, results[0]!.mean)).toBe(true);
          expect(result.totalSamples).toBe(total);
          expect(result.stats.n).toBe(n);
          const id = cluster.peers[index]!.id;
          const r = grid.findIndex((row) => row.includes(id));
          const elements = expectedPayloadElements(length + 1, columns, rows, r, grid[r]!.indexOf(id));
          expect(result.stats.bytesSent - FRAME_HEADER_BYTES * result.stats.framesSent).toBe(4 * elements);
        }
        for (let e = 0; e < length; e++) expect(Math.abs(results[0]!.mean[e]! - mean[e]!)).toBeLessThanOrEqual(bound[e]!);
        closeAll(cluster);
      });
    }
  }

  it("at 4x4 and 10 000 elements a member sends the flat ring's bytes (2(XY−1)/XY of the vector) within the headers", async () => {
    const ring = makeCluster(16, 10_000, 5, { ...FAST, frameBytes: 4096 });
    const flat = valuesOf(await Promise.allSettled(ring.peers.map((p) => p.reducer.allReduce({ attempt: 1, ring: ring.ring, gradient: p.gradient, samples: p.samples }))));
    const torus = valuesOf(await torusAll(ring, 2, gridOf(ring.ring, 4)));
    const mean = (results: RoundResult[]): number => results.reduce((sum, r) => sum + r.stats.bytesSent, 0) / results.length;
    const ratio = mean(torus) / mean(flat);
    expect(ratio).toBeGreaterThan(0.99);
    expect(ratio).toBeLessThan(1.01);
    closeAll(ring);
  });

  for (const codec of ["fp16", "int8"] as const) {
    it(`${codec} at 4x3: same bits everywhere, within the codec's bound for X + Y + 1 encodings`, async () => {
      const cluster = makeCluster(12, 500, 9, { ...FAST, frameBytes: 128 });
      const results = valuesOf(await torusAll(cluster, 1, gridOf(cluster.ring, 4), cluster.peers, { codec }));
      for (const result of results) expect(sameBits(result.mean, results[0]!.mean)).toBe(true);
      const total = cluster.peers.reduce((sum, p) => sum + p.samples, 0);
      expect(results[0]!.totalSamples).toBe(total);
      // Every partial sum is bounded by S = Σ_k max_e |samples_k·g_k[e]|; a value is encoded at most
      // X (row) + Y (column) + 1 (row gather) times along its way.
      let S = 0;
      for (const p of cluster.peers) S += p.gradient.reduce((max, g) => Math.max(max, Math.abs(g * p.samples)), 0);
      const sumBound = ringSumErrorBound(CHUNK_CODECS[codec], 4 + 3 + 1, S);
      const { mean } = reference(cluster.peers);
      for (let e = 0; e < 500; e++) expect(Math.abs(results[0]!.mean[e]! - mean[e]!)).toBeLessThanOrEqual((sumBound / total) * 1.001 + 1e-30);
      expect(ringChunkElements(CHUNK_CODECS[codec], 128)).toBeGreaterThan(1);
      closeAll(cluster);
    });
  }

  // [columns, rows, attached]: members beyond the grid attached to its rows' first members.
  const withAttached: [number, number, number][] = [[2, 2, 1], [2, 2, 2], [3, 2, 1], [4, 4, 3], [1, 2, 2]];
  for (const [columns, rows, attachedCount] of withAttached) {
    for (const codec of ["dense", "int8"] as const) {
      it(`${columns}x${rows} with ${attachedCount} attached, ${codec}: every member, attached ones included, gets the same bits and the exact total`, async () => {
        const n = columns * rows + attachedCount;
        const cluster = makeCluster(n, 300, 31 * n, { frameBytes: 128 });
        const grid = gridOf(cluster.ring.slice(0, columns * rows), columns);
        const attached = cluster.ring.slice(columns * rows);
        const results = valuesOf(await torusAll(cluster, 1, grid, cluster.peers, { attached, codec }));
        for (const result of results) expect(sameBits(result.mean, results[0]!.mean)).toBe(true);
        expect(results[0]!.totalSamples).toBe(cluster.peers.reduce((sum, p) => sum + p.samples, 0));
        if (codec === "dense") {
          const { mean, bound } = reference(cluster.peers);
          for (let e = 0; e < 300; e++) expect(Math.abs(results[0]!.mean[e]! - mean[e]!)).toBeLessThanOrEqual(bound[e]!);
        }
        // An attached member sends its contribution and receives the sums: one vector each way.
        const index = cluster.peers.findIndex((p) => p.id === attached[0]);
        expect(results[index]!.stats.bytesSent - FRAME_HEADER_BYTES * results[index]!.stats.framesSent).toBe(4 * 301);
        expect(results[index]!.stats.bytesReceived - FRAME_HEADER_BYTES * results[index]!.stats.framesReceived).toBe(4 * 301);
        closeAll(cluster);
      });
    }
  }

  it("ring and torus rounds alternate on one reducer; a torus frame of an earlier attempt is stale", async () => {
    const cluster = makeCluster(6, 50, 4, FAST);
    const grid = gridOf(cluster.ring, 3);
    const a = valuesOf(await torusAll(cluster, 1, grid));
    valuesOf(await Promise.allSettled(cluster.peers.map((p) => p.reducer.allReduce({ attempt: 2, ring: cluster.ring, gradient: p.gradient, samples: p.samples }))));
    const [first, second] = cluster.peers;
    const before = second!.reducer.counters().staleFrames;
    cluster.network.inject(first!.id, second!.id, encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "dense", stage: RingStage.TorusRow }, new Uint8Array(16)));
    const b = valuesOf(await torusAll(cluster, 3, grid));
    expect(sameBits(a[0]!.mean, b[0]!.mean)).toBe(true);
    expect(second!.reducer.counters().staleFrames).toBe(before + 1);
    closeAll(cluster);
  });
});

describe("torus all-reduce: failures are all or nothing for the whole grid", () => {
  // [columns, rows]; the survivors' retry is a torus where they factor, else a flat ring.
  const cases: [number, number, number | undefined, number][] = [
    [3, 3, 4, 100],
    [2, 4, undefined, 100],
    [8, 8, 9, 400],
  ];
  for (const [columns, rows, retryColumns, length] of cases) {
    it(`${columns}x${rows}: a member dying after every frame count: every survivor fails typed (or all finish), then the survivors reduce again`, async () => {
      const n = columns * rows;
      // 64 members share one event loop here: a stage's start may wait on a whole row's work.
      const options = n < 64 ? FAST : { ...FAST, progressTimeoutMs: 2_000, ringStartTimeoutMs: 2_000, roundTimeoutMs: 10_000 };
      const probe = makeCluster(n, length, 77, options);
      const clean = valuesOf(await torusAll(probe, 1, gridOf(probe.ring, columns)));
      const victim = probe.ring[columns + 1]!; // inside the grid: a row and a column both lose it
      const framesSent = probe.network.framesSent(victim);
      closeAll(probe);
      expect(framesSent).toBeGreaterThan(2 * (columns - 1) + 2 * (rows - 1));
      // Every frame count on the small grids; at 8x8 every third one, and the last.
      const counts = Array.from({ length: framesSent + 1 }, (_, k) => k).filter((k) => n < 64 || k % 3 === 0 || k === framesSent);
      for (const k of counts) {
        const cluster = makeCluster(n, length, 77, options);
        const grid = gridOf(cluster.ring, columns);
        cluster.network.killAfterFrames(victim, k);
        // Only the survivors are awaited: the victim, cut off, would wait out its own timeouts.
        const rounds = cluster.peers.map((p) => ({ id: p.id, round: p.reducer.allReduceTorus({ attempt: 1, rows: grid, gradient: p.gradient, samples: p.samples }) }));
        const victimRound = rounds.find((r) => r.id === victim)!.round.catch((error: unknown) => error);
        const settled = await Promise.allSettled(rounds.filter((r) => r.id !== victim).map((r) => r.round));
        const members = grid.flat();
        for (const s of settled) {
          if (s.status === "fulfilled") {
            // A member of another row may have had all it needs before the victim died (its last
            // frames feed only its own row's gather): its mean is then the whole one, never a part.
            // The coordinator aborts the attempt for everyone anyway, since the others failed.
            expect(sameBits(s.value.mean, clean[0]!.mean)).toBe(true);
          } else {
            expect(s.reason).toBeInstanceOf(AllReduceError);
            const error = s.reason as AllReduceError;
            expect(["peer-gone", "aborted", "timeout"]).toContain(error.code);
            if (error.suspect !== undefined) expect(members).toContain(error.suspect);
          }
        }
        expect(settled.some((s) => s.status === "rejected") || k === framesSent).toBe(true);
        cluster.peers.find((p) => p.id === victim)!.reducer.close();
        await victimRound;
        await cluster.network.flush();
        const survivors = cluster.peers.filter((p) => p.id !== victim);
        const ids = cluster.ring.filter((id) => id !== victim);
        const retry =
          retryColumns === undefined
            ? await Promise.allSettled(survivors.map((p) => p.reducer.allReduce({ attempt: 2, ring: ids, gradient: p.gradient, samples: p.samples })))
            : await torusAll(cluster, 2, gridOf(ids, retryColumns), survivors);
        const again = valuesOf(retry);
        for (const result of again) expect(sameBits(result.mean, again[0]!.mean)).toBe(true);
        closeAll(cluster);
      }
    }, 60_000);
  }

  for (const who of ["attached", "host"] as const) {
    it(`3x3 with 2 attached: the ${who} member dying after every frame count: every survivor fails typed (or has the whole mean)`, async () => {
      const run = async (killAfter: number | undefined): Promise<{ settled: PromiseSettledResult<RoundResult>[]; victim: string; framesSent: number }> => {
        // The host names a silent guest progressTimeoutMs before its row would name the host.
        const cluster = makeCluster(11, 200, 12, { ...FAST, progressTimeoutMs: 100, ringStartTimeoutMs: 400 });
        const grid = gridOf(cluster.ring.slice(0, 9), 3);
        const attached = cluster.ring.slice(9);
        const victim = who === "attached" ? attached[1]! : grid[1]![0]!;
        if (killAfter !== undefined) cluster.network.killAfterFrames(victim, killAfter);
        const rounds = cluster.peers.map((p) => ({ id: p.id, round: p.reducer.allReduceTorus({ attempt: 1, rows: grid, attached, gradient: p.gradient, samples: p.samples }) }));
        const victimRound = rounds.find((r) => r.id === victim)!.round.catch((error: unknown) => error);
        const settled = await Promise.allSettled(rounds.filter((r) => r.id !== victim).map((r) => r.round));
        cluster.peers.find((p) => p.id === victim)!.reducer.close();
        await victimRound;
        const framesSent = cluster.network.framesSent(victim);
        closeAll(cluster);
        return { settled, victim, framesSent };
      };
      const clean = await run(undefined);
      const whole = valuesOf(clean.settled)[0]!.mean;
      for (let k = 0; k <= clean.framesSent; k++) {
        const { settled, victim } = await run(k);
        for (const s of settled) {
          if (s.status === "fulfilled") expect(sameBits(s.value.mean, whole)).toBe(true);
          else {
            const error = s.reason as AllReduceError;
            expect(error).toBeInstanceOf(AllReduceError);
            expect(["peer-gone", "aborted", "timeout"]).toContain(error.code);
            expect(error.suspect, `${error.message} (k=${k})`).toBe(victim);
          }
        }
        expect(settled.some((s) => s.status === "rejected") || k === clean.framesSent).toBe(true);
      }
    }, 30_000);
  }

  it("a hung member (silent, link open): every survivor fails within the timeouts, and it is named", async () => {
    const cluster = makeCluster(9, 200, 3, FAST);
    const grid = gridOf(cluster.ring, 3);
    const hung = grid[1]![1]!;
    cluster.network.silence(hung);
    const started = Date.now();
    const settled = await torusAll(cluster, 1, grid);
    const errors = errorsOf(settled.filter((_, index) => cluster.peers[index]!.id !== hung));
    expect(Date.now() - started).toBeLessThan(3_000);
    for (const error of errors) expect(["timeout", "aborted"]).toContain(error.code);
    expect(errors.filter((error) => error.code === "timeout").map((error) => error.suspect)).toContain(hung);
    closeAll(cluster);
  });

  it("a killed member is named by everyone through the aborts relayed across rows and columns", async () => {
    const cluster = makeCluster(16, 200, 8, { ...FAST, progressTimeoutMs: 2_000, ringStartTimeoutMs: 2_000 });
    const grid = gridOf(cluster.ring, 4);
    const victim = grid[2]![3]!;
    cluster.network.killAfterFrames(victim, 3);
    const settled = await torusAll(cluster, 1, grid);
    const errors = errorsOf(settled.filter((_, index) => cluster.peers[index]!.id !== victim));
    for (const error of errors) expect(error.suspect).toBe(victim);
    closeAll(cluster);
  });

  describe("bad frames fail the attempt naming the sender", () => {
    const cases: { name: string; frame: (grid: string[][]) => Uint8Array<ArrayBuffer>; pattern: RegExp }[] = [
      { name: "a flat ring frame (stage 0)", frame: () => encodeDataFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0 }, new Float32Array(4)), pattern: /flat ring frame \(stage 0\) in a torus round/ },
      { name: "a column frame from a row neighbour", frame: () => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "dense", stage: RingStage.TorusColumn }, new Uint8Array(16)), pattern: /only the left neighbour/ },
      { name: "a row frame for a segment the schedule does not send", frame: () => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 1, offset: 0, codec: "dense", stage: RingStage.TorusRow }, new Uint8Array(16)), pattern: /carried segment 1, expected 2/ },
    ];
    for (const { name, frame, pattern } of cases) {
      it(name, async () => {
        const cluster = makeCluster(9, 100, 21, FAST);
        const grid = gridOf(cluster.ring, 3);
        // The sender is the target's left neighbour in its row: a member, and the one row frames come from.
        const [sender, target] = [grid[0]![0]!, grid[0]![1]!];
        cluster.network.inject(sender, target, frame(grid));
        const settled = await torusAll(cluster, 1, grid);
        const error = errorsOf([settled[cluster.peers.findIndex((p) => p.id === target)]!])[0]!;
        expect(error.code).toBe("bad-frame");
        expect(error.suspect).toBe(sender);
        expect(error.message, error.message).toMatch(pattern);
        closeAll(cluster);
      });
    }

    const attachCases: { name: string; from: "guest" | "other"; frame: () => Uint8Array<ArrayBuffer>; pattern: RegExp }[] = [
      { name: "an attach frame from a member not attached to the target", from: "other", frame: () => attachChunk(new Float32Array(32)), pattern: /not attached to this member/ },
      { name: "a NaN in an attached contribution", from: "guest", frame: () => attachChunk(new Float32Array(32).fill(Number.NaN)), pattern: /contribution chunk at offset 0: non-finite value NaN at element 0 of the chunk/ },
      { name: "an attached contribution's chunk of the wrong length", from: "guest", frame: () => attachChunk(new Float32Array(3)), pattern: /contribution chunk at offset 0: has 12 payload bytes, expected 128 \(32 elements, dense\)/ },
      { name: "an attached contribution sent as int8", from: "guest", frame: () => encodeCodedFrame({ kind: FrameKind.ReduceScatter, attempt: 1, step: 0, segment: 0, offset: 0, codec: "int8", stage: RingStage.TorusAttach }, new Uint8Array(8)), pattern: /int8 attach frame; the attach hop is float32/ },
    ];
    for (const { name, from, frame, pattern } of attachCases) {
      it(name, async () => {
        const cluster = makeCluster(5, 100, 23, { ...FAST, frameBytes: 128 });
        const grid = gridOf(cluster.ring.slice(0, 4), 2);
        const attached = [cluster.ring[4]!];
        const [host, sender] = [grid[0]![0]!, from === "guest" ? attached[0]! : grid[1]![1]!];
        // The guest's own chunks vanish, so the forged one is the first (else it may be a duplicate).
        if (from === "guest") cluster.network.silence(sender);
        cluster.network.inject(sender, host, frame());
        const settled = await torusAll(cluster, 1, grid, cluster.peers, { attached });
        const error = errorsOf([settled[cluster.peers.findIndex((p) => p.id === host)]!])[0]!;
        expect(error.code).toBe("bad-frame");
        expect(error.suspect).toBe(sender);
        expect(error.message, error.message).toMatch(pattern);
        closeAll(cluster);
      });
    }

    it("more frames ahead of this member than maxBufferedFutureBytes", async () => {
      const cluster = makeCluster(4, 100, 22, { ...FAST, maxBufferedFutureBytes: 1024 });
      const grid = gridOf(cluster.ring, 2);
      const [sender, target] = [grid[0]![0]!, grid[0]![1]!];
      const ahead = encodeCodedFrame({ kind: FrameKind.AllGather, attempt: 1, step: 0, segment: 0, offset: 0, codec: "dense", stage: RingStage.TorusRow }, new Uint8Array(600));
      const [targetPeer] = cluster.peers.filter((p) => p.id === target);
      // Started before the others, so the target is still in its row's reduce-scatter when they arrive.
      const round = targetPeer!.reducer.allReduceTorus({ attempt: 1, rows: grid, gradient: targetPeer!.gradient, samples: targetPeer!.samples });
      cluster.network.inject(sender, target, ahead);
      cluster.network.inject(sender, target, ahead.slice());
      const error = await round.then(
        () => undefined,
        (reason: unknown) => reason as AllReduceError,
      );
      expect(error?.code).toBe("bad-frame");
      expect(error?.suspect).toBe(sender);
      expect(error?.message).toMatch(/maxBufferedFutureBytes/);
      closeAll(cluster);
    });
  });

  it("refuses a ragged grid, a repeated member, a grid without this peer, and topk", async () => {
    const cluster = makeCluster(4, 10, 1, FAST);
    const [a, b, c, d] = cluster.ring as [string, string, string, string];
    const peer = cluster.peers.find((p) => p.id === a)!;
    const run = (rows: string[][], codec?: string) => peer.reducer.allReduceTorus({ attempt: 1, rows, gradient: peer.gradient, samples: 1, codec: codec as never });
    await expect(run([[a, b, c], [d]])).rejects.toThrow(/row 1 has 1 members, row 0 has 3/);
    await expect(run([[a, b], [b, a]])).rejects.toThrow(/repeated peer/);
    await expect(run([[b, c], [d, b]])).rejects.toThrow(/repeated peer|does not contain/);
    await expect(run([[b], [c]])).rejects.toThrow(/does not contain this peer/);
    await expect(run([[a, b], [c, d]], "topk")).rejects.toThrow(/topk/);
    await expect(peer.reducer.allReduceTorus({ attempt: 1, rows: [[a], [b]], attached: [c, d, "e"], gradient: peer.gradient, samples: 1 })).rejects.toThrow(/at most one per row/);
    await expect(peer.reducer.allReduceTorus({ attempt: 1, rows: [[a, b]], attached: [b], gradient: peer.gradient, samples: 1 })).rejects.toThrow(/repeated peer/);
    await expect(run([])).rejects.toThrow(/no rows/);
    closeAll(cluster);
  });
});

describe("torus all-reduce: forged frames, fuzzed", () => {
  // Seeded forgeries thrown at the host of a 2x2 torus with one attached member while all five run a
  // round: every frame kind, stage (0 to 255), step, segment, offset, payload length and value,
  // truncations, random bytes and aborts, from members and from a stranger. Nothing may throw or hang:
  // every member ends with the mean or a typed AllReduceError, and a clean round afterwards gives every
  // member the reference bits. (A forgery from a member's own link that looks genuine is that member
  // lying, which robust aggregation and audits answer; so the mean is compared only in the clean rounds.)
  const SEED = 0x70205;
  const CASES = 150;
  it(`${CASES} cases (seed ${SEED}): no throw, no hang, typed errors only; clean rounds after give the reference bits`, async () => {
    const random = seededRandom(SEED);
    const int = (max: number): number => Math.floor(random() * max);
    const cluster = makeCluster(5, 60, 44, { ...FAST, frameBytes: 64 });
    const grid = gridOf(cluster.ring.slice(0, 4), 2);
    const attached = [cluster.ring[4]!];
    const host = grid[0]![0]!;
    const senders = [...cluster.ring, "stranger"];
    const reference = valuesOf(await torusAll(cluster, 1, grid, cluster.peers, { attached }))[0]!.mean;
    const problems: string[] = [];
    let failedCases = 0;
    let attempt = 1;
    for (let k = 0; k < CASES; k++) {
      // This case's round, then a clean one at attempt + 1; a forgery for attempt + 2 is held for a
      // round that never runs (the next case starts at attempt + 3), one for attempt - 1 is stale.
      attempt += 3;
      const header = { kind: [FrameKind.ReduceScatter, FrameKind.AllGather][int(2)]!, attempt: attempt + [0, 0, 0, 2, -1][int(5)]!, step: int(3), segment: int(3), offset: [0, 16, 15, 64][int(4)]! };
      const payload = new Float32Array([0, 1, 15, 16, 17][int(5)]!).fill([1, Number.NaN, Infinity, -0, 3.4e38][int(5)]!);
      let frame: Uint8Array<ArrayBuffer> = encodeDataFrame({ ...header, stage: RingStage.TorusRow }, payload);
      const mutation = int(5);
      if (mutation === 0) frame[17] = int(256); // any stage byte, known or not
      else if (mutation === 1) frame = frame.slice(0, int(frame.length));
      else if (mutation === 2) frame = Uint8Array.from({ length: int(64) }, () => int(256));
      else if (mutation === 3) frame[1] = int(8); // any kind
      else frame[17] = [RingStage.TorusRow, RingStage.TorusColumn, RingStage.TorusAttach][int(3)]!;
      const from = senders[int(senders.length)]!;
      const rounds = torusAll(cluster, attempt, grid, cluster.peers, { attached });
      cluster.network.inject(from, host, frame);
      const settled = await rounds;
      for (const s of settled) {
        if (s.status === "rejected" && !(s.reason instanceof AllReduceError)) problems.push(`case ${k}: ${String(s.reason)}`);
      }
      if (settled.some((s) => s.status === "rejected")) failedCases++;
      await cluster.network.flush();
      const clean = valuesOf(await torusAll(cluster, attempt + 1, grid, cluster.peers, { attached }));
      if (!clean.every((r) => sameBits(r.mean, reference))) problems.push(`case ${k}: the clean round after it lost the reference bits`);
    }
    expect(problems).toEqual([]);
    // The forgeries reach the checks: most fail their round (the rest are stale, or a stranger's).
    expect(failedCases).toBeGreaterThan(CASES / 2);
    closeAll(cluster);
  }, 60_000);
});
