import { describe, expect, it } from "vitest";
import * as v from "valibot";
import { CoordinatorMessageSchema, MAX_LAYER_HASHES, MAX_LEASE_SAMPLES, MessageError, parseCoordinatorMessage, parseJsonWith, parseWorkerMessage, WorkerMessageSchema } from "../src/index.ts";

const round = { type: "round", attempt: 3, round: 2, epoch: 0, plan: { kind: "ring", members: ["w-a"] }, lease: [0, 1], frameBytes: 1024, upload: false };

describe("the round message's lease ahead", () => {
  it("is optional, and parsed like the lease itself", () => {
    expect(parseCoordinatorMessage(JSON.stringify(round))).not.toHaveProperty("next");
    expect(parseCoordinatorMessage(JSON.stringify({ ...round, next: [2, 3] }))).toMatchObject({ next: [2, 3] });
    for (const next of [[-1], [1.5], ["2"], null, Array.from({ length: MAX_LEASE_SAMPLES + 1 }, () => 0)]) {
      expect(() => parseCoordinatorMessage(JSON.stringify({ ...round, next })), JSON.stringify(next).slice(0, 20)).toThrow(MessageError);
    }
  });
});

describe("a pipeline round's fields", () => {
  const pipeline = { kind: "pipeline", stages: [{ from: 0, to: 2 }, { from: 2, to: 4 }], replicas: [["w-a", "w-b"]], microBatches: 4, schedule: "gpipe" };
  const result = { type: "result", attempt: 1, hash: "cd".repeat(32), samples: 10, loss: 1.5, timings: { computeMs: 9, readbackMs: 0, allReduceMs: 1, updateMs: 1, stageBusyMs: 6 }, bytesSent: 1, bytesReceived: 1 };

  it("a round carries the whole plan, checked like any plan", () => {
    expect(parseCoordinatorMessage(JSON.stringify({ ...round, pipeline }))).toMatchObject({ pipeline });
    for (const bad of [{ ...pipeline, replicas: [["w-a", "w-a"]] }, { ...pipeline, stages: [{ from: 1, to: 2 }, { from: 2, to: 4 }] }, { ...pipeline, microBatches: 0 }, { ...pipeline, replicas: [["w-a"]] }]) {
      expect(() => parseCoordinatorMessage(JSON.stringify({ ...round, pipeline: bad })), JSON.stringify(bad)).toThrow(MessageError);
    }
  });

  it("a stage's result carries its layer hashes (one or more, bounded, hex) and its busy time", () => {
    expect(parseWorkerMessage(JSON.stringify({ ...result, layerHashes: ["ab".repeat(32)] }))).toMatchObject({ layerHashes: ["ab".repeat(32)], timings: { stageBusyMs: 6 } });
    for (const layerHashes of [[], ["AB".repeat(32)], ["ab"], [1], Array.from({ length: MAX_LAYER_HASHES + 1 }, () => "ab".repeat(32))]) {
      expect(() => parseWorkerMessage(JSON.stringify({ ...result, layerHashes })), JSON.stringify(layerHashes).slice(0, 30)).toThrow(MessageError);
    }
    expect(() => parseWorkerMessage(JSON.stringify({ ...result, timings: { ...result.timings, stageBusyMs: -1 } }))).toThrow(MessageError);
  });
});

describe("parsing by the message's tag", () => {
  const phase = { type: "phase", attempt: 4, phase: "reducing" };
  /** What valibot's variant itself says of a message: the same outcome is expected of the parser's lookup by tag. */
  const byVariant = (message: unknown): { output?: unknown; error?: string } => {
    const result = v.safeParse(WorkerMessageSchema, message);
    return result.success ? { output: result.output } : { error: `bad worker message: ${v.summarize(result.issues)}` };
  };
  const byParser = (message: unknown): { output?: unknown; error?: string } => {
    try {
      return { output: parseWorkerMessage(JSON.stringify(message)) };
    } catch (error) {
      return { error: (error as Error).message };
    }
  };

  it("parses and refuses exactly as the whole union does, whatever the tag", () => {
    const cases: unknown[] = [
      phase,
      { ...phase, extra: 1 },
      { ...phase, attempt: -1 },
      { ...phase, type: "hello" },
      { ...phase, type: "nope" },
      { ...phase, type: "__proto__" },
      { ...phase, type: "toString" },
      { ...phase, type: 7 },
      { attempt: 4 },
      [phase],
      { type: "ready", round: 0, hash: "ab".repeat(32) },
      { type: "ready", round: 0 },
    ];
    for (const message of cases) expect(byParser(message), JSON.stringify(message)).toEqual(byVariant(message));
    expect(byParser(phase).output).toEqual(phase);
    expect(byParser({ ...phase, type: "nope" }).error).toMatch(/type/);
  });

  it("the coordinator's messages too", () => {
    const commit = { type: "commit", attempt: 3, round: 2, hash: "ab".repeat(32) };
    for (const message of [round, { ...round, lease: [-1] }, { ...round, type: "commit" }, commit, { ...commit, extra: true }, { ...commit, type: "abort" }]) {
      const whole = v.safeParse(CoordinatorMessageSchema, message);
      let parsed: unknown;
      try {
        parsed = parseCoordinatorMessage(JSON.stringify(message));
      } catch (error) {
        parsed = (error as Error).message;
      }
      expect(parsed, JSON.stringify(message)).toEqual(whole.success ? whole.output : `bad coordinator message: ${v.summarize(whole.issues)}`);
    }
  });

  it("leaves to the whole union what a lookup by tag would read differently: a piped union's checks, a tag two options share", () => {
    const a = v.strictObject({ type: v.literal("a"), n: v.number() });
    const piped = v.pipe(v.variant("type", [a]), v.check((m) => m.n < 10, "n must stay under 10"));
    expect(() => parseJsonWith(piped, "test message", JSON.stringify({ type: "a", n: 11 }))).toThrow(/n must stay under 10/);
    const shared = v.variant("type", [a, v.strictObject({ type: v.literal("a"), s: v.string() })]);
    for (const message of [{ type: "a", n: 1 }, { type: "a", s: "second option" }]) expect(parseJsonWith(shared, "test message", JSON.stringify(message))).toEqual(message);
  });
});
