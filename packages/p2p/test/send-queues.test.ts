import { describe, expect, it } from "vitest";
import { ChannelQueueFullError, ChannelSendQueues, type PendingSend } from "../src/send-queues.ts";
import { encodeChannelFrame, type ChannelName } from "../src/wire.ts";

type Item = PendingSend & { tag: string; outcome: "pending" | "sent" | Error };

function item(channel: ChannelName, tag: string, payloadBytes = 1): Item {
  const entry: Item = {
    tag,
    channel,
    message: encodeChannelFrame(channel, new Uint8Array(payloadBytes)),
    outcome: "pending",
    resolve: () => (entry.outcome = "sent"),
    reject: (error) => (entry.outcome = error),
  };
  return entry;
}

function drain(queues: ChannelSendQueues): string[] {
  const order: string[] = [];
  for (let next = queues.next(); next !== undefined; next = queues.next()) order.push((next as Item).tag);
  return order;
}

describe("ChannelSendQueues", () => {
  it("keeps each channel's frames in order and serves the channels in turn, one frame each", () => {
    const queues = new ChannelSendQueues(1 << 20);
    for (const tag of ["a1", "a2", "a3", "a4"]) queues.enqueue(item("allreduce", tag));
    queues.enqueue(item("control", "c1"));
    queues.enqueue(item("inference", "i1"));
    queues.enqueue(item("control", "c2"));
    expect(drain(queues)).toEqual(["a1", "i1", "c1", "a2", "c2", "a3", "a4"]);
    expect(queues.isEmpty).toBe(true);
  });

  it("lets a frame of another channel overtake a backlog after at most one backlog frame", () => {
    const queues = new ChannelSendQueues(1 << 20);
    for (let k = 0; k < 50; k++) queues.enqueue(item("allreduce", `a${k}`));
    expect((queues.next() as Item).tag).toBe("a0");
    queues.enqueue(item("control", "c"));
    expect([(queues.next() as Item).tag, (queues.next() as Item).tag]).toEqual(["c", "a1"]);
  });

  it("continues the turn from where it stopped, not from the first channel", () => {
    const queues = new ChannelSendQueues(1 << 20);
    queues.enqueue(item("control", "c1"));
    expect((queues.next() as Item).tag).toBe("c1");
    queues.enqueue(item("allreduce", "a1"));
    queues.enqueue(item("bench", "b1"));
    expect(drain(queues)).toEqual(["b1", "a1"]);
  });

  it("counts queued frames and wire bytes per channel, and gives them back as frames leave", () => {
    const queues = new ChannelSendQueues(1 << 20);
    queues.enqueue(item("allreduce", "a1", 100));
    queues.enqueue(item("allreduce", "a2", 50));
    queues.enqueue(item("control", "c1", 10));
    expect(queues.queued("allreduce")).toEqual({ frames: 2, bytes: 104 + 54 });
    expect(queues.queued("control")).toEqual({ frames: 1, bytes: 14 });
    expect(queues.queued("inference")).toEqual({ frames: 0, bytes: 0 });
    queues.next();
    expect(queues.queued("allreduce")).toEqual({ frames: 1, bytes: 54 });
    drain(queues);
    expect(queues.queued("allreduce")).toEqual({ frames: 0, bytes: 0 });
    expect(queues.queued("control")).toEqual({ frames: 0, bytes: 0 });
  });

  it("refuses a send past its channel's limit with a typed error, and still accepts the other channels'", () => {
    const queues = new ChannelSendQueues(250);
    queues.enqueue(item("allreduce", "a1", 96)); // 100 wire bytes
    queues.enqueue(item("allreduce", "a2", 96)); // 200
    let refused: unknown;
    try {
      queues.enqueue(item("allreduce", "a3", 96)); // 300 > 250
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(ChannelQueueFullError);
    expect(refused).toMatchObject({ channel: "allreduce", queuedBytes: 200, limitBytes: 250 });
    expect(queues.queued("allreduce")).toEqual({ frames: 2, bytes: 200 });
    queues.enqueue(item("control", "c1", 96));
    queues.enqueue(item("control", "c2", 96));
    expect(queues.queued("control")).toEqual({ frames: 2, bytes: 200 });
    queues.next(); // a1 leaves: room again on allreduce
    queues.enqueue(item("allreduce", "a3", 96));
    expect(queues.queued("allreduce")).toEqual({ frames: 2, bytes: 200 });
  });

  it("rejects every waiting send on rejectAll and leaves nothing counted", () => {
    const queues = new ChannelSendQueues(1 << 20);
    const items = [item("allreduce", "a"), item("control", "c"), item("activations", "x")];
    for (const entry of items) queues.enqueue(entry);
    const error = new Error("link closed");
    queues.rejectAll(error);
    expect(items.map((entry) => entry.outcome)).toEqual([error, error, error]);
    expect(queues.isEmpty).toBe(true);
    expect(queues.next()).toBeUndefined();
    expect(queues.queued("allreduce")).toEqual({ frames: 0, bytes: 0 });
  });
});
