import { createAllReducer } from "@crowdtrain/allreduce";
import { afterEach, describe, expect, it } from "vitest";
import { ChannelQueueFullError } from "../src/send-queues.ts";
import { createPeerTransport, type PeerTransport } from "../src/transport.ts";
import type { PeerTransportOptions } from "../src/options.ts";
import { CHANNEL_HEADER_BYTES, CHANNEL_IDS, MAX_CHANNEL_FRAME_BYTES, MAX_MESSAGE_BYTES, type ChannelName, type ChannelViolation } from "../src/wire.ts";
import { FakeNetwork, type FakePeer } from "./fake-peerjs.ts";

/** Lets dial timers and promise chains run to quiescence. */
async function settle(rounds = 5): Promise<void> {
  for (let k = 0; k < rounds; k++) await new Promise((resolve) => setTimeout(resolve, 0));
}

const open: PeerTransport[] = [];
afterEach(() => {
  for (const transport of open.splice(0)) transport.close();
});

function pair(options: Partial<PeerTransportOptions> = {}, autoDeliver = false) {
  const network = new FakeNetwork(autoDeliver);
  const peerA = network.peer("A");
  const peerB = network.peer("B");
  const a = createPeerTransport(peerA.asPeer(), options);
  const b = createPeerTransport(peerB.asPeer(), options);
  open.push(a, b);
  return { network, peerA, peerB, a, b };
}

function record(transport: PeerTransport, channels: ChannelName[]) {
  const frames: { channel: ChannelName; from: string; bytes: number[] }[] = [];
  for (const channel of channels) {
    transport.channel(channel).onFrame((from, frame) => frames.push({ channel, from, bytes: Array.from(frame) }));
  }
  const violations: { peer: string; violation: ChannelViolation }[] = [];
  transport.onViolation((peer, violation) => violations.push({ peer, violation }));
  const gone: string[] = [];
  transport.onPeerGone((peer) => gone.push(peer));
  return { frames, violations, gone };
}

/** The channel and first payload byte of every message A put on its link to B, in wire order. */
function wireOrder(peerA: FakePeer): string[] {
  return peerA.connectionWith("B").dataChannel.sent.map((m) => `${m[0] === CHANNEL_IDS.control ? "c" : "a"}${m[CHANNEL_HEADER_BYTES]}`);
}

function tagged(tag: number, bytes: number): Uint8Array<ArrayBuffer> {
  const frame = new Uint8Array(bytes);
  frame[0] = tag;
  return frame;
}

describe("createPeerTransport channels", () => {
  it("delivers each channel's frames only to that channel on the far side, bytes intact", async () => {
    const { peerA, a, b } = pair();
    const seen = record(b, ["allreduce", "control", "inference", "activations"]);
    await a.channel("allreduce").send("B", new Uint8Array([1, 2, 3]));
    await a.channel("control").send("B", new Uint8Array([4]));
    await a.channel("inference").send("B", new Uint8Array(0));
    peerA.connectionWith("B").dataChannel.deliver();
    expect(seen.frames).toEqual([
      { channel: "allreduce", from: "A", bytes: [1, 2, 3] },
      { channel: "control", from: "A", bytes: [4] },
      { channel: "inference", from: "A", bytes: [] },
    ]);
    expect(seen.violations).toEqual([]);
    expect(a.channel("allreduce")).toBe(a.channel("allreduce"));
    expect(a.channel("allreduce").stats()["B"]).toMatchObject({ framesSent: 1, bytesSent: 3 });
    expect(b.channel("control").stats()["A"]).toMatchObject({ framesReceived: 1, bytesReceived: 1 });
    expect(a.linkStats()["B"]).toMatchObject({ framesSent: 3, bytesSent: 3 * CHANNEL_HEADER_BYTES + 4 });
  });

  it("hands the handler an aligned view of the received message, and sends the bytes as they were when send was called", async () => {
    const { peerA, a, b } = pair();
    const views: Uint8Array[] = [];
    b.channel("allreduce").onFrame((_from, frame) => views.push(frame));
    const frame = new Uint8Array(new Float32Array([0.5, -1, 7]).buffer);
    const sent = a.channel("allreduce").send("B", frame); // the link is still dialling
    frame.fill(0);
    await sent;
    peerA.connectionWith("B").dataChannel.deliver();
    const view = views[0] as Uint8Array;
    expect(view.byteOffset % 4).toBe(0);
    expect(Array.from(new Float32Array(view.buffer, view.byteOffset, 3))).toEqual([0.5, -1, 7]);
  });

  it("reports an unknown channel id and an empty message as violations naming the sender, delivers neither, and keeps the link", async () => {
    const { peerB, a, b } = pair();
    const seen = record(a, ["allreduce", "activations", "inference", "control", "bench"]);
    await a.connect(["B"]);
    await settle();
    const fromB = peerB.connectionWith("A").dataChannel;
    fromB.send(new Uint8Array([0x2a, 0, 0, 0, 1, 2]));
    fromB.send(new Uint8Array(0));
    fromB.send(new Uint8Array([CHANNEL_IDS.allreduce, 1, 0, 0])); // a bare protocol frame, no channel header
    fromB.deliver();
    expect(seen.frames).toEqual([]);
    expect(seen.violations.map((v) => [v.peer, v.violation.kind])).toEqual([
      ["B", "unknown-channel"],
      ["B", "truncated"],
      ["B", "reserved-bits"],
    ]);
    expect(a.linkStats()["B"]).toMatchObject({ framesReceived: 3, framesRefused: 3 });
    // The link survives: the next good frame arrives and nobody was told B is gone.
    await b.channel("allreduce").send("A", new Uint8Array([9]));
    fromB.deliver();
    expect(seen.frames).toEqual([{ channel: "allreduce", from: "B", bytes: [9] }]);
    expect(seen.gone).toEqual([]);
  });

  it("reports a non-binary message as a violation and closes that link", async () => {
    const { peerA, a } = pair();
    const seen = record(a, ["allreduce"]);
    await a.connect(["B"]);
    peerA.connectionWith("B").emit("data", "hello");
    expect(seen.violations.map((v) => [v.peer, v.violation.kind])).toEqual([["B", "not-binary"]]);
    expect(seen.gone).toEqual(["B"]);
    expect(seen.frames).toEqual([]);
  });

  it("tells every channel's onPeerGone when a link closes", async () => {
    const { a, b } = pair();
    const gone: string[] = [];
    a.channel("allreduce").onPeerGone((peer) => gone.push(`allreduce:${peer}`));
    a.channel("control").onPeerGone((peer) => gone.push(`control:${peer}`));
    await a.connect(["B"]);
    await settle();
    b.close();
    expect(gone).toEqual(["allreduce:B", "control:B"]);
  });

  it("refuses a frame larger than one message before it touches the wire", async () => {
    const { peerA, a } = pair();
    await a.connect(["B"]);
    await expect(a.channel("activations").send("B", new Uint8Array(MAX_CHANNEL_FRAME_BYTES + 1))).rejects.toThrow(RangeError);
    expect(peerA.connectionWith("B").dataChannel.sent).toEqual([]);
  });
});

describe("createPeerTransport back-pressure per channel", () => {
  it("lets a control frame past an all-reduce backlog after at most one more all-reduce frame", async () => {
    const { peerA, a, b } = pair({ highWaterMarkBytes: 1_000, lowWaterMarkBytes: 0 });
    const seen = record(b, ["allreduce", "control"]);
    await a.connect(["B"]);
    const done: string[] = [];
    const allreduce = [1, 2, 3, 4, 5, 6].map((k) => a.channel("allreduce").send("B", tagged(k, 600)).then(() => done.push(`a${k}`)));
    const control = a.channel("control").send("B", tagged(1, 10)).then(() => done.push("c1"));
    await settle();
    // 604 bytes buffered after a1 is under the mark, so a2 went too; the rest wait.
    expect(wireOrder(peerA)).toEqual(["a1", "a2"]);
    expect(done).toEqual(["a1", "a2"]);
    expect(a.channel("allreduce").stats()["B"]).toMatchObject({ queuedFrames: 4, queuedBytes: 4 * 604 });
    expect(a.channel("control").stats()["B"]).toMatchObject({ queuedFrames: 1, queuedBytes: 14 });

    const dataChannel = peerA.connectionWith("B").dataChannel;
    dataChannel.deliver();
    await settle();
    // The control frame goes first; its 14 bytes leave room for two more all-reduce frames.
    expect(wireOrder(peerA)).toEqual(["a1", "a2", "c1", "a3", "a4"]);
    expect(done).toContain("c1");
    expect(done).not.toContain("a5");
    for (let k = 0; k < 5; k++) {
      dataChannel.deliver();
      await settle();
    }
    await Promise.all([...allreduce, control]);
    expect(wireOrder(peerA)).toEqual(["a1", "a2", "c1", "a3", "a4", "a5", "a6"]);
    expect(seen.frames.filter((f) => f.channel === "allreduce").map((f) => f.bytes[0])).toEqual([1, 2, 3, 4, 5, 6]);
    expect(a.channel("allreduce").stats()["B"]).toMatchObject({ queuedFrames: 0, queuedBytes: 0, framesSent: 6 });
    expect(dataChannel.listenerCount("bufferedamountlow")).toBe(0);
  });

  it("refuses a send past one channel's queue limit without refusing another channel's", async () => {
    const { peerA, a } = pair({ highWaterMarkBytes: 1_000, lowWaterMarkBytes: 0, maxQueuedBytesPerChannel: MAX_MESSAGE_BYTES });
    await a.connect(["B"]);
    const frame = 100 * 1024;
    const allreduce = a.channel("allreduce");
    await allreduce.send("B", new Uint8Array(frame)); // taken at once; now the data channel is above the mark
    const queued = [allreduce.send("B", new Uint8Array(frame)), allreduce.send("B", new Uint8Array(frame))];
    const refused = allreduce.send("B", new Uint8Array(frame));
    const control = a.channel("control").send("B", new Uint8Array(frame));
    await expect(refused).rejects.toBeInstanceOf(ChannelQueueFullError);
    await expect(refused).rejects.toMatchObject({ channel: "allreduce" });
    expect(allreduce.stats()["B"]).toMatchObject({ queuedFrames: 2, queuedBytes: 2 * (frame + CHANNEL_HEADER_BYTES) });
    expect(a.channel("control").stats()["B"]).toMatchObject({ queuedFrames: 1 });
    const dataChannel = peerA.connectionWith("B").dataChannel;
    for (let k = 0; k < 4; k++) {
      dataChannel.deliver();
      await settle();
    }
    await Promise.all([...queued, control]);
    expect(allreduce.stats()["B"]).toMatchObject({ framesSent: 3, queuedFrames: 0 });
  });

  it("fails the sends waiting on a data channel that does not drain within drainTimeoutMs, then works again once it drains", async () => {
    const { peerA, a } = pair({ highWaterMarkBytes: 1_000, lowWaterMarkBytes: 0, drainTimeoutMs: 40 });
    await a.connect(["B"]);
    await a.channel("allreduce").send("B", new Uint8Array(2_000));
    const stuck = a.channel("allreduce").send("B", new Uint8Array(10));
    const alsoStuck = a.channel("control").send("B", new Uint8Array(10));
    await expect(stuck).rejects.toThrow(/did not drain within drainTimeoutMs=40/);
    await expect(alsoStuck).rejects.toThrow(/did not drain/);
    const dataChannel = peerA.connectionWith("B").dataChannel;
    expect(dataChannel.listenerCount("bufferedamountlow")).toBe(0);
    dataChannel.deliver();
    await a.channel("control").send("B", new Uint8Array(10));
    expect(dataChannel.sent).toHaveLength(2);
  });

  it("fails waiting sends when the transport closes, and refuses sends after", async () => {
    const { a } = pair({ highWaterMarkBytes: 1_000, lowWaterMarkBytes: 0 });
    await a.connect(["B"]);
    await a.channel("allreduce").send("B", new Uint8Array(2_000));
    const waiting = a.channel("inference").send("B", new Uint8Array(10));
    await settle();
    a.close();
    await expect(waiting).rejects.toThrow(/transport closed/);
    await expect(a.channel("inference").send("B", new Uint8Array(1))).rejects.toThrow(/transport is closed/);
  });
});

describe("the all-reducer on its channel", () => {
  it("completes a round while other channels carry traffic and a peer sends junk", async () => {
    const { peerB, a, b } = pair({}, true);
    const violations: string[] = [];
    a.onViolation((peer, v) => violations.push(`${peer}:${v.kind}`));
    const reducerA = createAllReducer({ transport: a.channel("allreduce"), options: { frameBytes: 64 } });
    const reducerB = createAllReducer({ transport: b.channel("allreduce"), options: { frameBytes: 64 } });
    const benchFrames: number[] = [];
    a.channel("bench").onFrame((_from, frame) => benchFrames.push(frame.byteLength));
    await a.connect(["B"]);
    await settle();
    const gradientA = Float32Array.from({ length: 100 }, (_, i) => i);
    const gradientB = Float32Array.from({ length: 100 }, (_, i) => 100 - i);
    const rounds = Promise.all([
      reducerA.allReduce({ attempt: 1, ring: ["A", "B"], gradient: gradientA, samples: 1 }),
      reducerB.allReduce({ attempt: 1, ring: ["A", "B"], gradient: gradientB, samples: 1 }),
    ]);
    const noise = [b.channel("bench").send("A", new Uint8Array(500)), b.channel("control").send("A", new Uint8Array([1, 2]))];
    peerB.connectionWith("A").dataChannel.send(new Uint8Array([0xee, 0, 0, 0, 1])); // unknown channel: dropped, reported
    const [resultA, resultB] = await rounds;
    await Promise.all(noise);
    await settle();
    expect(Array.from(resultA.mean)).toEqual(Array.from({ length: 100 }, () => 50));
    expect(Array.from(resultB.mean)).toEqual(Array.from(resultA.mean));
    expect(reducerA.counters().undecodableFrames).toBe(0);
    expect(benchFrames).toEqual([500]);
    expect(violations).toEqual(["B:unknown-channel"]);
    reducerA.close();
    reducerB.close();
  });
});
