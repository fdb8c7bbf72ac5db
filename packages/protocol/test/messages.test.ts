import { describe, expect, it } from "vitest";
import { MAX_LEASE_SAMPLES, MessageError, parseCoordinatorMessage } from "../src/index.ts";

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
