import { describe, expect, it } from "vitest";
import { encodeActivation } from "@crowdtrain/protocol";
import { ActivationViolation, NeighbourGone, PipelineTimeout, StageInbox } from "../src/index.ts";

/** Stage 1 of 3: forward activations from "prev" (stage 0), backward gradients from "next" (stage 2). */
function inbox(timers?: { fire: () => void }[]): StageInbox {
  return new StageInbox({
    attempt: 4,
    micros: 2,
    previous: { id: "prev", stage: 0 },
    next: { id: "next", stage: 2 },
    inputShapeOf: () => [2, 3],
    outputShapeOf: () => [2, 5],
    ...(timers === undefined
      ? {}
      : {
          timeoutMs: 1_000,
          setTimer: (fn: () => void) => {
            const timer = { fire: fn };
            timers.push(timer);
            return timer;
          },
          clearTimer: (handle: unknown) => timers.splice(timers.indexOf(handle as { fire: () => void }), 1),
        }),
  });
}
const forward = (micro: number, from = 0): Uint8Array[] => encodeActivation({ direction: "forward", attempt: 4, micro, stage: from, shape: [2, 3] }, Float32Array.from({ length: 6 }, (_, i) => micro * 10 + i));

describe("StageInbox", () => {
  it("hands out a micro-batch that arrived before it was asked for, and one that arrives after", async () => {
    const box = inbox();
    for (const frame of forward(1)) box.deliver("prev", frame);
    expect(Array.from(await box.take("forward", 1))).toEqual([10, 11, 12, 13, 14, 15]);
    const later = box.take("forward", 0);
    for (const frame of forward(0)) box.deliver("prev", frame);
    expect(Array.from(await later)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("refuses frames from a peer that is not the neighbour for their direction, and undecodable bytes, naming the sender", async () => {
    const box = inbox();
    const waiting = box.take("forward", 0);
    expect(() => box.deliver("next", forward(0)[0]!)).toThrow(ActivationViolation);
    await expect(waiting).rejects.toThrow(/next: sent forward activations, but is not this stage's neighbour/);
    // The round is over: later frames are ignored, later waits fail with the same violation.
    box.deliver("prev", forward(0)[0]!);
    await expect(box.take("forward", 1)).rejects.toThrow(/next: sent forward/);
    const other = inbox();
    expect(() => other.deliver("prev", Uint8Array.from([1, 2, 3]))).toThrow(/prev: undecodable activation frame/);
  });

  it("fails the round at once when a neighbour's link closes, not for a stranger's", async () => {
    const box = inbox();
    const waiting = box.take("backward", 0);
    box.peerGone("w-someone-else", "closed");
    box.peerGone("next", "data connection closed");
    const error = await waiting.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(NeighbourGone);
    expect((error as NeighbourGone).peer).toBe("next");
  });

  it("fails a wait by its named timeout, naming the neighbour that went silent", async () => {
    const timers: { fire: () => void }[] = [];
    const box = inbox(timers);
    const waiting = box.take("backward", 1);
    expect(timers).toHaveLength(1);
    timers[0]!.fire();
    const error = await waiting.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(PipelineTimeout);
    expect((error as Error).message).toBe("no backward activations of micro-batch 1 from next within 1000 ms");
  });
});
