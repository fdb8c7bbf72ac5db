import { describe, expect, it } from "vitest";
import type { AbortCause } from "../src/index.ts";
import { CONFIG, Harness, HASH, TIMINGS } from "./sim.ts";

/** The causes of the "aborted" effects so far, in order. */
const causes = (h: Harness): AbortCause[] => h.effects.flatMap((e) => (e.type === "aborted" ? [e.cause] : []));

/**
 * Every abort says why twice: in words (the log line, for people) and as a cause (for the server's
 * counters). Both must name the same attempt, one effect per log line, or a counter would drift.
 */
function expectOneEffectPerLogLine(h: Harness): void {
  const logged = h.effects.flatMap((e) => (e.type === "log" && e.kind === "aborted" ? [e.text] : []));
  const effects = h.effects.flatMap((e) => (e.type === "aborted" ? [e] : []));
  expect(effects.map((e) => `round ${e.round} (attempt ${e.attempt}) aborted`)).toEqual(logged.map((text) => text.replace(/:.*$/s, "")));
}

describe("abort causes", () => {
  it("a member leaving mid-round: departure", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const open = h.coordinator.state.current!;
    h.apply({ type: "leave", peerId: "b", reason: "tab closed", now: 5 });
    expect(h.effects).toContainEqual({ type: "aborted", round: 1, attempt: open.attempt, cause: "departure" });
    expect(causes(h)).toEqual(["departure"]);
    expectOneEffectPerLogLine(h);
  });

  it("silence past the round deadline: deadline", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll(undefined, ["b"]);
    h.apply({ type: "tick", now: CONFIG.roundDeadlineMs + 1 });
    expect(causes(h)).toEqual(["deadline"]);
    expectOneEffectPerLogLine(h);
  });

  it("hashes split without a majority: hash-split", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.report("a", HASH(1));
    h.report("b", HASH(99));
    expect(causes(h)).toEqual(["hash-split"]);
    expectOneEffectPerLogLine(h);
  });

  it("a sample count other than the lease: lease-mismatch", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.report("a", HASH(1), 1);
    expect(causes(h)).toEqual(["lease-mismatch"]);
  });

  it("a member's own failure: failure; its second witness then knocks the suspect out of the next round: suspected", () => {
    const h = Harness.create({ minWorkers: 3 });
    ["a", "b", "c"].forEach((p) => h.join(p));
    const first = h.coordinator.state.current!;
    h.apply({ type: "failed", peerId: "c", attempt: first.attempt, code: "timeout", suspect: "b", message: "silent", now: h.now });
    // The next round opened at once (no re-plan delay in tests), b still in it; the second witness
    // speaks of the first attempt, so the abort it causes is of the new round, and for suspicion.
    expect(h.coordinator.state.current!.members).toContain("b");
    h.apply({ type: "failed", peerId: "a", attempt: first.attempt, code: "peer-gone", suspect: "b", message: "link closed", now: h.now });
    expect(causes(h)).toEqual(["failure", "suspected"]);
    expectOneEffectPerLogLine(h);
  });

  it("a plan of one whose uploaded state fails the server's check: check-failed", () => {
    const h = Harness.create();
    h.join("a");
    h.report("a", HASH(1));
    h.verify("a", HASH(1), "weights[3] is NaN");
    expect(causes(h)).toEqual(["check-failed"]);
  });

  it("the job stopping with a round open: stopping; a round that commits emits no abort", () => {
    const h = Harness.create({ minWorkers: 2 });
    ["a", "b"].forEach((p) => h.join(p));
    h.reportAll();
    expect(causes(h)).toEqual([]);
    h.apply({ type: "result", peerId: "a", attempt: h.coordinator.state.current!.attempt, hash: HASH(2), samples: 6, loss: 1, timings: TIMINGS, bytesSent: 0, bytesReceived: 0, now: h.now });
    h.apply({ type: "stop", reason: "operator", now: h.now });
    expect(causes(h)).toEqual(["stopping"]);
    expectOneEffectPerLogLine(h);
  });
});
