import { parseCoordinatorMessage, type CoordinatorMessage, type Plan } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { MessageEncoder } from "../src/cluster/encode.ts";

type RoundMessage = Extract<CoordinatorMessage, { type: "round" }>;
const ring = (...members: string[]): Plan => ({ kind: "ring", members });
const round = (plan: Plan, peer: number, lease: number[], attempt = 4): RoundMessage => ({ type: "round", attempt, round: 3, epoch: 0, plan, lease, next: [peer], frameBytes: 1024, upload: peer === 0 });
/** What a worker receives, parsed as it parses it. */
const received = (text: string): RoundMessage => parseCoordinatorMessage(text) as RoundMessage;

describe("MessageEncoder", () => {
  it("encodes each member's round message to text that parses back to that very message plus the plan's number", () => {
    const encoder = new MessageEncoder();
    const plan = ring("w-a", "w-b", "w-c");
    for (const [peer, lease] of [[0, [1, 2]], [1, [3]], [2, []]] as const) {
      const message = round(plan, peer, [...lease]);
      expect(received(encoder.encode(message, { peer }))).toEqual({ ...message, planId: 0 });
    }
  });

  it("sends a recipient an unchanged plan by number only, and a changed one in full under a new number", () => {
    const encoder = new MessageEncoder();
    const [a, b] = [{}, {}];
    const first = received(encoder.encode(round(ring("w-a", "w-b"), 0, [1], 4), a));
    expect(first.plan).toEqual(ring("w-a", "w-b"));
    // The next round's plan is a new object with the same members: the same number, no plan.
    const again = received(encoder.encode(round(ring("w-a", "w-b"), 0, [2], 5), a));
    expect(again).toMatchObject({ planId: first.planId, attempt: 5, lease: [2] });
    expect(again.plan).toBeUndefined();
    // Another recipient (or the same worker reconnected: a new socket) has not seen it: in full.
    expect(received(encoder.encode(round(ring("w-a", "w-b"), 1, [3], 5), b)).plan).toEqual(ring("w-a", "w-b"));
    // A changed plan: in full, under a new number, even to a recipient that held the old one.
    const changed = received(encoder.encode(round(ring("w-b", "w-a"), 0, [4], 6), a));
    expect(changed.plan).toEqual(ring("w-b", "w-a"));
    expect(changed.planId).toBeGreaterThan(first.planId as number);
    // Back to the first plan: a number of its own again (numbers only grow), so in full.
    const back = received(encoder.encode(round(ring("w-a", "w-b"), 0, [5], 7), a));
    expect(back.plan).toEqual(ring("w-a", "w-b"));
    expect(back.planId).toBeGreaterThan(changed.planId as number);
  });

  it("a plan of 1,000 members goes to each recipient once: later rounds are a few hundred bytes", () => {
    const encoder = new MessageEncoder();
    const members = Array.from({ length: 1000 }, (_, k) => `w-${k.toString(16).padStart(24, "0")}`);
    const recipient = {};
    const full = encoder.encode(round(ring(...members), 1, [7, 8]), recipient).length;
    const byNumber = encoder.encode(round(ring(...members), 1, [9, 10], 5), recipient).length;
    expect(full).toBeGreaterThan(27_000);
    expect(byNumber).toBeLessThan(200);
  });

  it("encodes every other message exactly as JSON.stringify does", () => {
    const encoder = new MessageEncoder();
    const messages: CoordinatorMessage[] = [
      { type: "commit", attempt: 4, round: 3, hash: "a".repeat(64) },
      { type: "stop", reason: "done" },
      { type: "sync", round: 2 },
    ];
    for (const message of messages) expect(encoder.encode(message, {})).toBe(JSON.stringify(message));
  });
});
