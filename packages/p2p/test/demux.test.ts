import { describe, expect, it } from "vitest";
import { ChannelDemux } from "../src/demux.ts";
import { CHANNEL_NAMES, encodeChannelFrame, type ChannelName, type ChannelViolation } from "../src/wire.ts";

type Seen = { channel: ChannelName; from: string; payload: number[] };

function listenEverywhere(demux: ChannelDemux): { seen: Seen[]; violations: { peer: string; violation: ChannelViolation }[] } {
  const seen: Seen[] = [];
  const violations: { peer: string; violation: ChannelViolation }[] = [];
  for (const channel of CHANNEL_NAMES) demux.onFrame(channel, (from, frame) => seen.push({ channel, from, payload: Array.from(frame) }));
  demux.onViolation((peer, violation) => violations.push({ peer, violation }));
  return { seen, violations };
}

describe("ChannelDemux", () => {
  it("hands each frame to its own channel's handlers only", () => {
    const demux = new ChannelDemux();
    const { seen, violations } = listenEverywhere(demux);
    CHANNEL_NAMES.forEach((channel, i) => {
      expect(demux.deliver(`peer-${i}`, encodeChannelFrame(channel, new Uint8Array([i, i + 1])))).toEqual({ channel, payloadBytes: 2 });
    });
    expect(seen).toEqual(CHANNEL_NAMES.map((channel, i) => ({ channel, from: `peer-${i}`, payload: [i, i + 1] })));
    expect(violations).toEqual([]);
  });

  it("reports an unknown channel id, an empty message and bad reserved bytes with the sender, and delivers none of them", () => {
    const demux = new ChannelDemux();
    const { seen, violations } = listenEverywhere(demux);
    expect(demux.deliver("mallory", new Uint8Array([200, 0, 0, 0, 1]))).toBeUndefined();
    expect(demux.deliver("eve", new ArrayBuffer(0))).toBeUndefined();
    expect(demux.deliver("trent", new Uint8Array([1, 1, 0, 0, 9]))).toBeUndefined();
    expect(seen).toEqual([]);
    expect(violations.map((v) => [v.peer, v.violation.kind])).toEqual([
      ["mallory", "unknown-channel"],
      ["eve", "truncated"],
      ["trent", "reserved-bits"],
    ]);
  });

  it("keeps delivering after a refused message (a bad message never desynchronises the link)", () => {
    const demux = new ChannelDemux();
    const { seen, violations } = listenEverywhere(demux);
    demux.deliver("p", new Uint8Array([99, 0, 0, 0]));
    demux.deliver("p", encodeChannelFrame("allreduce", new Uint8Array([5])));
    expect(violations).toHaveLength(1);
    expect(seen).toEqual([{ channel: "allreduce", from: "p", payload: [5] }]);
  });

  it("stops calling a handler once unsubscribed, and keeps the others", () => {
    const demux = new ChannelDemux();
    const first: number[] = [];
    const second: number[] = [];
    const off = demux.onFrame("control", (_from, frame) => first.push(frame[0] as number));
    demux.onFrame("control", (_from, frame) => second.push(frame[0] as number));
    demux.deliver("p", encodeChannelFrame("control", new Uint8Array([1])));
    off();
    demux.deliver("p", encodeChannelFrame("control", new Uint8Array([2])));
    expect(first).toEqual([1]);
    expect(second).toEqual([1, 2]);
  });

  it("refuses a subscription to a channel that does not exist", () => {
    expect(() => new ChannelDemux().onFrame("gossip" as ChannelName, () => undefined)).toThrow(RangeError);
  });
});
