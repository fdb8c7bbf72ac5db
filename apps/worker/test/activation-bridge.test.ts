import { describe, expect, it } from "vitest";
import type { Transport } from "@crowdtrain/allreduce";
import { decodeActivationFrame, encodeActivation } from "@crowdtrain/protocol";
import { ActivationBridge, MAX_EARLY_FRAMES } from "../src/session/activation-bridge.ts";
import { SendFailed, StagePortEnd } from "../src/trainer/stage-port.ts";

/** A channel the test plays the far side of: frames in by hand, sends recorded (or failed). */
class FakeChannel implements Transport {
  readonly self = "me";
  readonly sent: { to: string; frame: Uint8Array }[] = [];
  failSendsTo: string | undefined;
  private frameHandler: ((from: string, frame: Uint8Array) => void) | undefined;
  private goneHandler: ((peer: string, reason: string) => void) | undefined;
  send(to: string, frame: Uint8Array<ArrayBuffer>): Promise<void> {
    if (to === this.failSendsTo) return Promise.reject(new Error("data channel closed"));
    this.sent.push({ to, frame });
    return Promise.resolve();
  }
  onFrame(handler: (from: string, frame: Uint8Array) => void): () => void {
    this.frameHandler = handler;
    return () => (this.frameHandler = undefined);
  }
  onPeerGone(handler: (peer: string, reason: string) => void): () => void {
    this.goneHandler = handler;
    return () => (this.goneHandler = undefined);
  }
  deliver(from: string, frame: Uint8Array): void {
    this.frameHandler?.(from, frame);
  }
  gone(peer: string): void {
    this.goneHandler?.(peer, "ICE disconnected");
  }
}

const frame = (attempt: number, micro = 0): Uint8Array<ArrayBuffer> => encodeActivation({ direction: "forward", attempt, micro, stage: 0, shape: [1, 2] }, Float32Array.from([1, 2]))[0]!;

/** The trainer's end of the round's port, recording what reached it. */
function trainerEnd(port: MessagePort): { end: StagePortEnd; frames: { from: string; attempt: number }[]; gone: string[]; aborted: string[] } {
  const seen = { frames: [] as { from: string; attempt: number }[], gone: [] as string[], aborted: [] as string[] };
  const end = new StagePortEnd(port, {
    onFrame: (from, bytes) => seen.frames.push({ from, attempt: decodeActivationFrame(bytes).attempt }),
    onGone: (peer) => seen.gone.push(peer),
    onAbort: (reason) => seen.aborted.push(reason),
  });
  return { end, ...seen };
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

describe("the activation bridge between the peer link and the trainer", () => {
  it("hands the running round its frames, holds a later round's until it opens, and drops an ended round's", async () => {
    const channel = new FakeChannel();
    const bridge = new ActivationBridge(channel, () => undefined);
    const first = trainerEnd(bridge.open(3));
    channel.deliver("b", frame(3));
    channel.deliver("b", frame(4, 1)); // a neighbour already in the next round
    await settle();
    expect(first.frames).toEqual([{ from: "b", attempt: 3 }]);
    first.end.close();
    bridge.close();
    channel.deliver("b", frame(3, 1)); // late: round 3 ended here
    const second = trainerEnd(bridge.open(4));
    await settle();
    expect(second.frames).toEqual([{ from: "b", attempt: 4 }]);
    second.end.close();
    bridge.dispose();
  });

  it("tells the round a neighbour's link closed, and an abort of its own attempt only", async () => {
    const channel = new FakeChannel();
    const bridge = new ActivationBridge(channel, () => undefined);
    const round = trainerEnd(bridge.open(5));
    channel.gone("c");
    bridge.abort(4, "an older attempt");
    bridge.abort(5, "coordinator aborted attempt 5");
    await settle();
    expect(round.gone).toEqual(["c"]);
    expect(round.aborted).toEqual(["coordinator aborted attempt 5"]);
    round.end.close();
    bridge.dispose();
  });

  it("sends the trainer's frames on the link and answers each send: done, or failed naming the peer", async () => {
    const channel = new FakeChannel();
    const bridge = new ActivationBridge(channel, () => undefined);
    const { end } = trainerEnd(bridge.open(1));
    const frames = encodeActivation({ direction: "forward", attempt: 1, micro: 0, stage: 0, shape: [3, 4] }, new Float32Array(12), 64);
    expect(frames.length).toBeGreaterThan(1);
    await end.send("b", frames);
    expect(channel.sent.map((s) => s.to)).toEqual(frames.map(() => "b"));
    channel.failSendsTo = "c";
    const failed = end.send("c", [frame(1)]);
    await expect(failed).rejects.toThrow(SendFailed);
    await expect(failed).rejects.toMatchObject({ peer: "c" });
    // A send still waiting when the round's port closes fails rather than hanging.
    channel.send = () => new Promise(() => undefined);
    const stuck = end.send("b", [frame(1)]);
    end.close();
    await expect(stuck).rejects.toThrow(/port closed/);
    bridge.dispose();
  });

  it("drops undecodable frames, saying so, and holds at most MAX_EARLY_FRAMES ahead", async () => {
    const channel = new FakeChannel();
    const logged: string[] = [];
    const bridge = new ActivationBridge(channel, (text) => logged.push(text));
    channel.deliver("b", Uint8Array.from([1, 2, 3]));
    expect(logged[0]).toMatch(/undecodable frame from b/);
    for (let k = 0; k <= MAX_EARLY_FRAMES; k++) channel.deliver("b", frame(9, k % 100));
    expect(logged.at(-1)).toMatch(/more than 4096 frames or 64 MiB ahead/);
    const round = trainerEnd(bridge.open(9));
    await settle();
    expect(round.frames).toHaveLength(MAX_EARLY_FRAMES);
    round.end.close();
    // Frames of made-up attempts far ahead are dropped when a round opens.
    channel.deliver("b", frame(500));
    channel.deliver("b", frame(12));
    bridge.close();
    const later = trainerEnd(bridge.open(11));
    bridge.close();
    const far = trainerEnd(bridge.open(12));
    await settle();
    expect(far.frames).toEqual([{ from: "b", attempt: 12 }]);
    const skipped = trainerEnd(bridge.open(500));
    await settle();
    expect(skipped.frames).toEqual([]);
    for (const end of [later, far, skipped]) end.end.close();
    bridge.dispose();
  });
});
