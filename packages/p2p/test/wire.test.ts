import { describe, expect, it } from "vitest";
import {
  CHANNEL_HEADER_BYTES,
  CHANNEL_IDS,
  CHANNEL_NAMES,
  decodeChannelFrame,
  encodeChannelFrame,
  MAX_CHANNEL_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
  type ChannelName,
} from "../src/wire.ts";

const bytes = (...values: number[]): Uint8Array<ArrayBuffer> => new Uint8Array(values);

describe("channel ids", () => {
  it("are distinct single bytes, never 0, and the names the task needs are there", () => {
    const ids = Object.values(CHANNEL_IDS);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(Number.isInteger(id) && id >= 1 && id <= 255).toBe(true);
    expect(CHANNEL_NAMES).toEqual(expect.arrayContaining(["allreduce", "activations", "inference", "control"]));
    expect(CHANNEL_NAMES.map((name) => CHANNEL_IDS[name])).toEqual([...ids].sort((a, b) => a - b));
  });
});

describe("encodeChannelFrame", () => {
  it("writes the channel id, three zero bytes, then the payload", () => {
    const message = encodeChannelFrame("control", bytes(7, 8, 9));
    expect(Array.from(message)).toEqual([CHANNEL_IDS.control, 0, 0, 0, 7, 8, 9]);
  });

  it("copies the payload: changing the caller's bytes afterwards does not change the message", () => {
    const frame = bytes(1, 2, 3, 4);
    const message = encodeChannelFrame("allreduce", frame);
    frame.fill(0xee);
    expect(Array.from(message.subarray(CHANNEL_HEADER_BYTES))).toEqual([1, 2, 3, 4]);
    expect(message.buffer).not.toBe(frame.buffer);
  });

  it("encodes only the viewed bytes of a subarray", () => {
    const backing = bytes(9, 9, 1, 2, 3, 9);
    const message = encodeChannelFrame("inference", backing.subarray(2, 5));
    expect(Array.from(message)).toEqual([CHANNEL_IDS.inference, 0, 0, 0, 1, 2, 3]);
  });

  it("accepts a frame of exactly MAX_CHANNEL_FRAME_BYTES, a whole message, and refuses one byte more", () => {
    expect(encodeChannelFrame("activations", new Uint8Array(MAX_CHANNEL_FRAME_BYTES)).byteLength).toBe(MAX_MESSAGE_BYTES);
    expect(() => encodeChannelFrame("activations", new Uint8Array(MAX_CHANNEL_FRAME_BYTES + 1))).toThrow(RangeError);
  });

  it("refuses a channel name that is not in the map", () => {
    expect(() => encodeChannelFrame("gossip" as ChannelName, bytes(1))).toThrow(/unknown channel gossip/);
    expect(() => encodeChannelFrame("toString" as ChannelName, bytes(1))).toThrow(RangeError);
  });
});

describe("decodeChannelFrame", () => {
  it("round-trips every channel's payload bytes", () => {
    for (const channel of CHANNEL_NAMES) {
      const payload = Uint8Array.from({ length: 300 }, (_, i) => (i * 31 + CHANNEL_IDS[channel]) & 0xff);
      const decoded = decodeChannelFrame(encodeChannelFrame(channel, payload).buffer);
      if (!decoded.ok) throw new Error(decoded.violation.detail);
      expect(decoded.channel).toBe(channel);
      expect(Array.from(decoded.payload)).toEqual(Array.from(payload));
    }
  });

  it("returns a view into the received buffer, 4-byte aligned, so float32 payloads need no copy", () => {
    const message = encodeChannelFrame("allreduce", new Uint8Array(new Float32Array([1.5, -2, 3.25]).buffer));
    const decoded = decodeChannelFrame(message.buffer);
    if (!decoded.ok) throw new Error(decoded.violation.detail);
    expect(decoded.payload.buffer).toBe(message.buffer);
    expect(decoded.payload.byteOffset).toBe(CHANNEL_HEADER_BYTES);
    expect(decoded.payload.byteOffset % 4).toBe(0);
    expect(Array.from(new Float32Array(decoded.payload.buffer, decoded.payload.byteOffset, 3))).toEqual([1.5, -2, 3.25]);
  });

  it("delivers a header-only message as an empty payload of its channel", () => {
    const decoded = decodeChannelFrame(encodeChannelFrame("control", new Uint8Array(0)));
    expect(decoded.ok && decoded.channel === "control" && decoded.payload.byteLength === 0).toBe(true);
  });

  it("refuses an empty message and one shorter than the header as truncated", () => {
    for (const message of [new ArrayBuffer(0), bytes(CHANNEL_IDS.allreduce), bytes(CHANNEL_IDS.allreduce, 0, 0)]) {
      const decoded = decodeChannelFrame(message);
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) expect(decoded.violation.kind).toBe("truncated");
    }
    const empty = decodeChannelFrame(new ArrayBuffer(0));
    if (!empty.ok) expect(empty.violation.detail).toMatch(/empty message/);
  });

  it("refuses id 0, ids past the map and 255 as unknown channels, naming the id", () => {
    const unused = Math.max(...Object.values(CHANNEL_IDS)) + 1;
    for (const id of [0, unused, 255]) {
      const decoded = decodeChannelFrame(bytes(id, 0, 0, 0, 1, 2));
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) {
        expect(decoded.violation.kind).toBe("unknown-channel");
        expect(decoded.violation.detail).toContain(`channel id ${id}`);
      }
    }
  });

  it("refuses non-zero reserved bytes, which also catches a bare all-reduce frame sent without a channel header", () => {
    // A protocol frame starts with its FRAME_VERSION then its kind (never 0): not a channel frame.
    for (const message of [bytes(CHANNEL_IDS.allreduce, 1, 0, 0, 5), bytes(CHANNEL_IDS.control, 0, 0, 1), bytes(CHANNEL_IDS.control, 0, 2, 0)]) {
      const decoded = decodeChannelFrame(message);
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) expect(decoded.violation.kind).toBe("reserved-bits");
    }
  });
});
