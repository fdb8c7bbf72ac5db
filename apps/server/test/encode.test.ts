import { parseCoordinatorMessage, type CoordinatorMessage } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { MessageEncoder } from "../src/cluster/encode.ts";

const plan = { kind: "ring" as const, members: ["w-a", "w-b", "w-c"] };
const round = (peer: number, lease: number[]): CoordinatorMessage => ({ type: "round", attempt: 4, round: 3, epoch: 0, plan, lease, next: [peer], frameBytes: 1024, upload: peer === 0 });

describe("MessageEncoder", () => {
  it("encodes each member's round message to text that parses back to that very message, sharing one plan", () => {
    const encoder = new MessageEncoder();
    for (const [peer, lease] of [[0, [1, 2]], [1, [3]], [2, []]] as const) {
      const message = round(peer, [...lease]);
      const text = encoder.encode(message);
      expect(parseCoordinatorMessage(text)).toEqual(message);
      expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(message)));
    }
  });

  it("a new round's plan object is serialized anew (a changed plan never reuses the old text)", () => {
    const encoder = new MessageEncoder();
    encoder.encode(round(0, [1]));
    const other: CoordinatorMessage = { ...(round(0, [1]) as Extract<CoordinatorMessage, { type: "round" }>), plan: { kind: "ring", members: ["w-a", "w-b"] } };
    expect(parseCoordinatorMessage(encoder.encode(other))).toEqual(other);
  });

  it("encodes every other message exactly as JSON.stringify does", () => {
    const encoder = new MessageEncoder();
    const messages: CoordinatorMessage[] = [
      { type: "commit", attempt: 4, round: 3, hash: "a".repeat(64) },
      { type: "stop", reason: "done" },
      { type: "sync", round: 2 },
    ];
    for (const message of messages) expect(encoder.encode(message)).toBe(JSON.stringify(message));
  });
});
