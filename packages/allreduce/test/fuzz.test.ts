import { decodeFrame, encodeAbortFrame, FRAME_HEADER_BYTES, FrameKind, MAX_FRAME_BYTES, type Frame } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { AllReduceError, createAllReducer, systemClock, type AllReducer, type AllReduceOptions, type PeerId, type RoundResult, type Transport } from "../src/index.ts";
import { sameBits } from "./harness.ts";
import { createMemoryNetwork, seededRandom, type MemoryNetwork } from "./memory-network.ts";

/**
 * Seeded fuzzing of the frames one peer receives during a round: random bytes, truncated and
 * bit-flipped valid frames, rewritten header fields, NaN/Inf payloads, odd lengths, aborts with
 * junk, duplicates, and frames from the wrong sender. Each forged frame is handed to the target's
 * transport handler directly (so a throw would surface here), while the target runs a round alone.
 * Every frame must be ignored (stale, held for a later round, or a stranger's), accepted only if it
 * is a genuine-looking chunk, or fail the round with an AllReduceError naming its sender; never throw.
 * Then a clean round on the same all-reducers must still give every member the reference bits.
 * Replay a failure with the seed in its message (FUZZ_SEED below).
 */

const FUZZ_SEED = 0x5eed_f022;
const CASES = 1_200;
/** Long enough that no round of a case ever times out: a case lasts a few event-loop turns. */
const OPTIONS: Partial<AllReduceOptions> = { frameBytes: 64, progressTimeoutMs: 5_000, ringStartTimeoutMs: 5_000, roundTimeoutMs: 10_000 };
const RING = ["p0", "p1", "p2"];
const [LEFT, TARGET, RIGHT] = RING as [string, string, string];
const STRANGER = "intruder";
const LENGTH = 101;

type Settled = { state: "pending" } | { state: "fulfilled"; value: RoundResult } | { state: "rejected"; reason: unknown };

function track(promise: Promise<RoundResult>): { settled: Settled } {
  const box: { settled: Settled } = { settled: { state: "pending" } };
  promise.then(
    (value) => (box.settled = { state: "fulfilled", value }),
    (reason: unknown) => (box.settled = { state: "rejected", reason }),
  );
  return box;
}

const nextTurn = (): Promise<void> => new Promise((resolve) => systemClock().setTimeout(() => resolve(undefined), 0));

/** A transport that also hands its frame handler to the test, for synchronous delivery of forged frames. */
function tapped(inner: Transport): { transport: Transport; deliver(from: PeerId, bytes: Uint8Array): void; received: { from: PeerId; bytes: Uint8Array }[] } {
  let handler: ((from: PeerId, frame: Uint8Array) => void) | undefined;
  const received: { from: PeerId; bytes: Uint8Array }[] = [];
  const transport: Transport = {
    self: inner.self,
    send: (to, frame) => inner.send(to, frame),
    onFrame(h) {
      handler = h;
      return inner.onFrame((from, frame) => {
        received.push({ from, bytes: new Uint8Array(frame) });
        h(from, frame);
      });
    },
    onPeerGone: (h) => inner.onPeerGone(h),
  };
  return {
    transport,
    received,
    deliver(from, bytes) {
      if (handler === undefined) throw new Error("no frame handler registered");
      handler(from, bytes);
    },
  };
}

type Cluster = { network: MemoryNetwork; reducers: Map<string, AllReducer>; target: ReturnType<typeof tapped>; gradients: Map<string, Float32Array>; samples: Map<string, number> };

function makeCluster(seed: number): Cluster {
  const network = createMemoryNetwork(seed);
  const reducers = new Map<string, AllReducer>();
  const gradients = new Map<string, Float32Array>();
  const samples = new Map<string, number>();
  let target: ReturnType<typeof tapped> | undefined;
  const gradientRandom = seededRandom(77);
  for (const id of RING) {
    const gradient = new Float32Array(LENGTH);
    for (let e = 0; e < LENGTH; e++) gradient[e] = (gradientRandom() - 0.5) * 10 ** Math.floor(gradientRandom() * 6 - 3);
    gradients.set(id, gradient);
    samples.set(id, 1 + Math.floor(gradientRandom() * 64));
    const inner = network.transport(id);
    const transport = id === TARGET ? (target = tapped(inner)).transport : inner;
    reducers.set(id, createAllReducer({ transport, options: OPTIONS }));
  }
  return { network, reducers, target: target!, gradients, samples };
}

async function cleanRound(cluster: Cluster, attempt: number): Promise<RoundResult[]> {
  const settled = await Promise.allSettled(
    RING.map((id) => cluster.reducers.get(id)!.allReduce({ attempt, ring: RING, gradient: cluster.gradients.get(id)!, samples: cluster.samples.get(id)! })),
  );
  return settled.map((s) => {
    if (s.status === "rejected") throw s.reason;
    return s.value;
  });
}

class Fuzz {
  readonly random: () => number;
  constructor(seed: number) {
    this.random = seededRandom(seed);
  }
  int(max: number): number {
    return Math.floor(this.random() * max);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  bytes(length: number): Uint8Array<ArrayBuffer> {
    const out = new Uint8Array(length);
    for (let k = 0; k < length; k++) out[k] = this.int(256);
    return out;
  }
}

type Forged = { from: PeerId; frames: Uint8Array<ArrayBuffer>[]; note: string };

/** ASCII text as bytes (this package has no TextEncoder typings: it is pure). */
const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));
const copy = (bytes: Uint8Array): Uint8Array<ArrayBuffer> => new Uint8Array(bytes);
const withRound = (bytes: Uint8Array, attempt: number): Uint8Array<ArrayBuffer> => {
  const out = copy(bytes);
  new DataView(out.buffer).setUint32(4, attempt >>> 0, true);
  return out;
};

/** One forged delivery for the round `round`, built from the genuine frames the target receives. */
function forge(fuzz: Fuzz, genuine: readonly Uint8Array[], attempt: number): Forged {
  const from = fuzz.chance(0.7) ? LEFT : fuzz.chance(0.5) ? RIGHT : STRANGER;
  const valid = withRound(fuzz.pick(genuine), attempt);
  const view = new DataView(valid.buffer);
  switch (fuzz.int(11)) {
    case 0:
      return { from, frames: [fuzz.bytes(fuzz.pick([0, 1, 15, 16, 17, 80, 300]) + fuzz.int(4))], note: "random bytes" };
    case 1:
      return { from, frames: [valid.slice(0, fuzz.int(valid.length))], note: "a truncated frame" };
    case 2: {
      for (let flips = 1 + fuzz.int(3); flips > 0; flips--) {
        const at = fuzz.int(valid.length);
        valid[at] = (valid[at] as number) ^ (1 << fuzz.int(8));
      }
      return { from, frames: [valid], note: "bit flips" };
    }
    case 3: {
      const field = fuzz.pick(["version", "kind", "step", "segment", "offset", "codec", "reserved"] as const);
      if (field === "version") view.setUint8(0, fuzz.pick([0, 1, 3, 255]));
      else if (field === "codec") view.setUint8(16, fuzz.pick([0, 1, 2, 3, 4, 5, 255]));
      else if (field === "reserved") view.setUint8(17 + fuzz.int(3), 1 + fuzz.int(255));
      else if (field === "kind") view.setUint8(1, fuzz.pick([0, 1, 2, 3, 4, 5, 6, 255]));
      else if (field === "step") view.setUint16(2, fuzz.pick([0, 1, 2, 3, 0xffff]), true);
      else if (field === "segment") view.setUint32(8, fuzz.pick([0, 1, 2, 3, 99, 0xffffffff]), true);
      else view.setUint32(12, fuzz.pick([0, 1, 2, 15, 16, 32, 33, 34, 48, 0xffffffff]), true);
      return { from, frames: [valid], note: `header field ${field}` };
    }
    case 4: {
      const offset = fuzz.pick([-8, -3, -1, 0, 1, 2, 3, 8, 1_000]);
      return { from, frames: [withRound(valid, attempt + offset)], note: `round ${offset >= 0 ? "+" : ""}${offset}` };
    }
    case 5: {
      const floats = (valid.length - FRAME_HEADER_BYTES) / 4;
      for (let k = 1 + fuzz.int(3); k > 0 && floats > 0; k--) {
        view.setFloat32(FRAME_HEADER_BYTES + 4 * fuzz.int(floats), fuzz.pick([Number.NaN, Infinity, -Infinity, 3.4e38, -0, 1e-45]), true);
      }
      return { from, frames: [valid], note: "odd payload values" };
    }
    case 6: {
      const change = fuzz.pick([-4, -3, -1, 1, 2, 4, 64]);
      const out = new Uint8Array(Math.max(0, valid.length + change));
      out.set(valid.subarray(0, Math.min(valid.length, out.length)));
      return { from, frames: [out], note: `payload length ${change >= 0 ? "+" : ""}${change}` };
    }
    case 7: {
      const suspect = fuzz.pick(["", LEFT, RIGHT, TARGET, STRANGER, "x".repeat(300)]);
      const reason = fuzz.pick(["", "junk", "é".repeat(50), "x".repeat(5_000)]);
      if (fuzz.chance(0.6)) {
        try {
          return { from, frames: [encodeAbortFrame({ attempt, suspect, reason })], note: "an abort" };
        } catch {
          // Too large to encode: hand-build one instead.
        }
      }
      const body = fuzz.chance(0.5) ? fuzz.bytes(fuzz.int(200)) : ascii(fuzz.pick(['{"suspect":1}', "{", '{"suspect":"p0","reason":"r"}', '"x"', "null"]));
      const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
      frame.set(valid.subarray(0, FRAME_HEADER_BYTES));
      new DataView(frame.buffer).setUint8(1, FrameKind.Abort);
      frame.set(body, FRAME_HEADER_BYTES);
      return { from, frames: [frame], note: "a malformed abort" };
    }
    case 8:
      return { from: LEFT, frames: [valid, copy(valid)], note: "a duplicated chunk" };
    case 9: {
      const big = new Uint8Array(MAX_FRAME_BYTES + 4);
      big.set(valid);
      return { from, frames: [big], note: "an oversized frame" };
    }
    default:
      return { from: fuzz.pick([RIGHT, STRANGER]), frames: [valid], note: "a genuine chunk from the wrong sender" };
  }
}

/** Whether a frame, given alone, looks like a genuine chunk the target expects now (so it may be applied silently). */
function genuineLooking(frame: Frame, from: PeerId, attempt: number, genuine: readonly Uint8Array[]): boolean {
  if (frame.kind === FrameKind.Abort || from !== LEFT || frame.attempt !== attempt || frame.codec !== "dense") return false;
  if (!new Float32Array(frame.payload.slice().buffer).every(Number.isFinite)) return false;
  return genuine.some((bytes) => {
    const g = decodeFrame(bytes);
    return g.kind !== FrameKind.Abort && g.kind === frame.kind && g.step === frame.step && g.segment === frame.segment && g.offset === frame.offset && g.payload.length === frame.payload.length;
  });
}

describe(`all-reduce data-channel frames, fuzzed (seed ${FUZZ_SEED})`, () => {
  it(`${CASES} forged frames: each ignored, or failing the round with an AllReduceError naming its sender; then a clean round gives the reference bits`, async () => {
    // Reference: a clean round on identical peers, and the genuine frames the target receives from its left.
    const probe = makeCluster(FUZZ_SEED);
    const reference = await cleanRound(probe, 1);
    const genuine = probe.target.received.filter((r) => r.from === LEFT && decodeFrame(r.bytes).kind !== FrameKind.Abort).map((r) => r.bytes);
    expect(genuine.length).toBeGreaterThanOrEqual(4);
    for (const r of reference) expect(sameBits(r.mean, reference[0]!.mean)).toBe(true);
    for (const reducer of probe.reducers.values()) reducer.close();

    const fuzz = new Fuzz(FUZZ_SEED);
    const cluster = makeCluster(FUZZ_SEED);
    const target = cluster.reducers.get(TARGET)!;
    const problems: string[] = [];
    const outcomes: Record<string, number> = {};
    /** Rounds a forged frame was held for: never reused as a case's round, so no case inherits another's frames. */
    const poisoned = new Set<number>();
    let attempt = 0;
    const nextRound = (): number => {
      do attempt++;
      while (poisoned.has(attempt));
      return attempt;
    };
    let frames = 0;
    for (let k = 0; k < CASES; k++) {
      const r = nextRound();
      const run = track(target.allReduce({ attempt: r, ring: RING, gradient: cluster.gradients.get(TARGET)!, samples: cluster.samples.get(TARGET)! }));
      const before = target.counters();
      const forged = forge(fuzz, genuine, r);
      const where = `case ${k} (seed ${FUZZ_SEED}): ${forged.note} from ${forged.from}, ${forged.frames.map((f) => f.length).join("+")} bytes`;
      const decoded: (Frame | undefined)[] = [];
      for (const bytes of forged.frames) {
        frames++;
        let frame: Frame | undefined;
        try {
          frame = decodeFrame(bytes);
          if (frame.attempt > r) poisoned.add(frame.attempt);
        } catch {
          frame = undefined;
        }
        decoded.push(frame);
        try {
          cluster.target.deliver(forged.from, bytes);
        } catch (error) {
          problems.push(`${where}: the frame handler threw ${String(error)}`);
        }
      }
      await nextTurn();
      const after = target.counters();
      const settled = run.settled;
      if (settled.state === "fulfilled") {
        problems.push(`${where}: a round of three completed with only one member running`);
      } else if (settled.state === "rejected") {
        const error = settled.reason;
        if (!(error instanceof AllReduceError)) problems.push(`${where}: rejected with ${String(error)}, not an AllReduceError`);
        else if (error.code === "bad-frame") {
          if (error.suspect !== forged.from) problems.push(`${where}: bad-frame naming ${error.suspect}, not the sender ${forged.from}`);
          outcomes["bad-frame"] = (outcomes["bad-frame"] ?? 0) + 1;
        } else if (error.code === "aborted") {
          if (!decoded.some((f) => f?.kind === FrameKind.Abort) || !RING.includes(forged.from) || !error.message.includes(`peer ${forged.from} aborted`)) {
            problems.push(`${where}: aborted without a member's abort frame: ${error.message}`);
          }
          outcomes.aborted = (outcomes.aborted ?? 0) + 1;
        } else problems.push(`${where}: failed with ${error.code}: ${error.message}`);
      } else {
        // Still running: every forged frame must have been ignored for a reason, or look genuine.
        const ignored =
          after.staleFrames > before.staleFrames ||
          after.bufferedFutureBytes > before.bufferedFutureBytes ||
          after.lastViolation !== before.lastViolation ||
          (after.undecodableFrames > before.undecodableFrames && forged.from === STRANGER);
        const strangersAbort = decoded.every((f) => f?.kind === FrameKind.Abort && f.attempt === r) && forged.from === STRANGER;
        const genuineChunk = forged.frames.length === 1 && decoded[0] !== undefined && genuineLooking(decoded[0], forged.from, r, genuine);
        if (!ignored && !strangersAbort && !genuineChunk) {
          const headers = decoded.map((f) => (f === undefined ? "undecodable" : f.kind === FrameKind.Abort ? `abort round ${f.attempt}` : `kind ${f.kind} round ${f.attempt} step ${f.step} segment ${f.segment} offset ${f.offset} length ${f.payload.length}`));
          problems.push(`${where}: neither ignored nor refused [${headers.join("; ")}] (counters ${JSON.stringify(before)} -> ${JSON.stringify(after)})`);
        }
        const kind = genuineChunk ? "accepted as genuine" : ignored ? "ignored" : "a stranger's abort ignored";
        outcomes[kind] = (outcomes[kind] ?? 0) + 1;
        target.abortRound(r, "fuzz case done");
        await nextTurn();
        const ended = run.settled;
        if (ended.state !== "rejected" || !(ended.reason instanceof AllReduceError) || ended.reason.code !== "aborted") {
          problems.push(`${where}: abortRound did not end the round as aborted (${ended.state})`);
        }
      }
      for (const p of poisoned) if (p <= r) poisoned.delete(p);
    }
    await cluster.network.flush();
    expect(frames).toBeGreaterThanOrEqual(1_000);
    expect(problems, `${problems.length} of ${CASES} cases (seed ${FUZZ_SEED}); outcomes ${JSON.stringify(outcomes)}:\n${problems.slice(0, 30).join("\n")}`).toEqual([]);
    // Every kind of outcome happened, or the fuzzer is not reaching the code it means to.
    expect(outcomes["bad-frame"], JSON.stringify(outcomes)).toBeGreaterThan(CASES / 4);
    expect(outcomes.ignored, JSON.stringify(outcomes)).toBeGreaterThan(CASES / 20);
    expect(outcomes.aborted, JSON.stringify(outcomes)).toBeGreaterThan(0);
    expect(outcomes["accepted as genuine"], JSON.stringify(outcomes)).toBeGreaterThan(0);

    // A clean round on the same all-reducers, after all that: the reference bits everywhere.
    const results = await cleanRound(cluster, nextRound());
    for (const result of results) expect(sameBits(result.mean, reference[0]!.mean)).toBe(true);
    for (const reducer of cluster.reducers.values()) reducer.close();
  }, 60_000);
});
