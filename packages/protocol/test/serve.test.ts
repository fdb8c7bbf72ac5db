import * as v from "valibot";
import { describe, expect, it } from "vitest";
import {
  decodeServeReply,
  decodeServeRequest,
  encodeServeError,
  encodeServeReply,
  encodeServeRequest,
  MAX_PREDICT_ROWS,
  parseServeServerMessage,
  parseServeTabMessage,
  PredictRequestSchema,
  PROTOCOL_VERSION,
  SERVE_FRAME_VERSION,
  SERVE_HEADER_BYTES,
  ServeFrameKind,
  ServeMessageError,
} from "../src/index.ts";

type Header = { kind: number; id: number; rows: number; round?: number; version?: number; reserved?: number };

/** A serve frame written byte by byte, so the decoder is checked against the layout, not the encoder. */
function rawFrame(header: Header, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(SERVE_HEADER_BYTES + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, header.kind);
  view.setUint8(1, header.version ?? SERVE_FRAME_VERSION);
  view.setUint16(2, header.reserved ?? 0, true);
  view.setUint32(4, header.id, true);
  view.setUint32(8, header.rows, true);
  view.setUint32(12, header.round ?? 0, true);
  out.set(payload, SERVE_HEADER_BYTES);
  return out;
}

const f32Bytes = (values: readonly number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);

/** The same bytes at byte offset `shift` of a larger buffer. */
function shifted(bytes: Uint8Array, shift: number): Uint8Array {
  const big = new Uint8Array(bytes.byteLength + shift + 3);
  big.set(bytes, shift);
  return big.subarray(shift, shift + bytes.byteLength);
}

/** rowsOf for a tab holding exactly request `id` of `rows` rows. */
const holding =
  (id: number, rows: number) =>
  (asked: number): number | undefined =>
    asked === id ? rows : undefined;

const CLASSES = 3;
const FEATURES = 4;
/** Two rows of CLASSES outputs. */
const outputs = [0.1, 0.2, 0.7, 1, 0, -0];
const TOKEN = "abcdefghijklmnopqrstuvwxyz_-0123";

describe("serve frames", () => {
  it("round-trips a request frame, the inputs viewed in place", () => {
    const inputs = Float32Array.from([1.5, -2, 3e-8, 0, 3e38, -1, 0.25, 7]);
    const bytes = encodeServeRequest(0xfffffffe, 2, inputs);
    expect(bytes.byteLength).toBe(SERVE_HEADER_BYTES + 32);
    expect(Array.from(bytes.subarray(0, 4))).toEqual([ServeFrameKind.request, SERVE_FRAME_VERSION, 0, 0]);
    const frame = decodeServeRequest(bytes, FEATURES);
    expect(frame.id).toBe(0xfffffffe);
    expect(frame.rows).toBe(2);
    expect(Array.from(frame.inputs)).toEqual(Array.from(inputs));
    expect(frame.inputs.buffer).toBe(bytes.buffer);
    // The same bytes as the layout written by hand.
    expect(Array.from(bytes)).toEqual(Array.from(rawFrame({ kind: ServeFrameKind.request, id: 0xfffffffe, rows: 2 }, new Uint8Array(inputs.buffer))));
  });

  it("encodes only the inputs' own view of a larger buffer", () => {
    const all = Float32Array.from([9, 9, 1, 2, 3, 4, 9]);
    const frame = decodeServeRequest(encodeServeRequest(3, 1, all.subarray(2, 6)), FEATURES);
    expect(Array.from(frame.inputs)).toEqual([1, 2, 3, 4]);
    const reply = decodeServeReply(encodeServeReply(3, 1, 0, all.subarray(2, 5)), CLASSES, holding(3, 1));
    expect(reply).toMatchObject({ kind: "reply", rows: 1 });
    if (reply.kind !== "reply") throw new Error("wrong kind");
    expect(Array.from(reply.outputs)).toEqual([1, 2, 3]);
  });

  it("round-trips a reply frame with its round", () => {
    const bytes = encodeServeReply(42, 2, 0xffffffff, Float32Array.from(outputs));
    expect(bytes[0]).toBe(ServeFrameKind.reply);
    const reply = decodeServeReply(bytes, CLASSES, holding(42, 2));
    expect(reply).toMatchObject({ kind: "reply", id: 42, rows: 2, round: 0xffffffff });
    if (reply.kind !== "reply") throw new Error("wrong kind");
    expect(Array.from(reply.outputs)).toEqual(Array.from(Float32Array.from(outputs)));
    expect(Object.is(reply.outputs[5], -0)).toBe(true);
  });

  it("round-trips an error frame, non-ASCII text included, and cuts a long message", () => {
    const bytes = encodeServeError(8, 'WebGL context lost — "ü" \n\u0000');
    expect(bytes[0]).toBe(ServeFrameKind.error);
    for (const byte of bytes) expect(byte).toBeLessThan(0x80);
    expect(decodeServeReply(bytes, CLASSES, holding(8, 5))).toEqual({ kind: "error", id: 8, message: 'WebGL context lost — "ü" \n\u0000' });
    const long = "é".repeat(10_000);
    const cut = decodeServeReply(encodeServeError(8, long), CLASSES, holding(8, 5));
    if (cut.kind !== "error") throw new Error("wrong kind");
    expect(cut.message.length).toBeGreaterThan(0);
    expect(cut.message.length).toBeLessThan(long.length);
    expect(long.startsWith(cut.message)).toBe(true);
  });

  it("decodes frames at every unaligned byte offset", () => {
    const request = encodeServeRequest(1, 2, Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    const reply = encodeServeReply(1, 2, 5, Float32Array.from(outputs));
    const error = encodeServeError(1, "nope");
    for (const shift of [1, 2, 3, 4, 5]) {
      expect(Array.from(decodeServeRequest(shifted(request, shift), FEATURES).inputs), `request at +${shift}`).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
      const decoded = decodeServeReply(shifted(reply, shift), CLASSES, holding(1, 2));
      if (decoded.kind !== "reply") throw new Error("wrong kind");
      expect(Array.from(decoded.outputs), `reply at +${shift}`).toEqual(Array.from(Float32Array.from(outputs)));
      expect(decodeServeReply(shifted(error, shift), CLASSES, holding(1, 2))).toEqual({ kind: "error", id: 1, message: "nope" });
    }
  });

  it("accepts a frame of exactly MAX_PREDICT_ROWS rows", () => {
    const rows = MAX_PREDICT_ROWS;
    const reply = decodeServeReply(encodeServeReply(2, rows, 1, new Float32Array(rows)), 1, holding(2, rows));
    expect(reply).toMatchObject({ kind: "reply", rows });
    expect(decodeServeRequest(encodeServeRequest(2, rows, new Float32Array(rows)), 1).rows).toBe(rows);
  });
});

describe("decodeServeReply refuses", () => {
  const good = (): Uint8Array => encodeServeReply(42, 2, 1, Float32Array.from(outputs));
  const decode = (bytes: Uint8Array, rowsOf: (id: number) => number | undefined = holding(42, 2)) => () => decodeServeReply(bytes, CLASSES, rowsOf);

  it("a reply or error for a request not outstanding on the tab", () => {
    expect(decode(good(), () => undefined)).toThrow(ServeMessageError);
    expect(decode(good(), holding(41, 2))).toThrow(/not outstanding/);
    expect(decode(encodeServeError(42, "x"), holding(41, 2))).toThrow(ServeMessageError);
  });

  it("a reply with another row count than the request", () => {
    expect(decode(good(), holding(42, 3))).toThrow(/2 rows; the request had 3/);
    expect(decode(good(), holding(42, 1))).toThrow(ServeMessageError);
  });

  it("a payload of the wrong length", () => {
    for (const values of [outputs.slice(0, 5), [...outputs, 1], []]) {
      expect(decode(rawFrame({ kind: ServeFrameKind.reply, id: 42, rows: 2 }, f32Bytes(values))), `${values.length} floats`).toThrow(ServeMessageError);
    }
    // A ragged byte count, not a whole number of floats.
    const ragged = new Uint8Array(6 * 4 + 1);
    expect(decode(rawFrame({ kind: ServeFrameKind.reply, id: 42, rows: 2 }, ragged))).toThrow(/bytes/);
    expect(() => decodeServeReply(good(), CLASSES + 1, holding(42, 2))).toThrow(ServeMessageError);
  });

  it("a non-finite output", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const values = [...outputs];
      values[4] = bad;
      expect(decode(encodeServeReply(42, 2, 1, Float32Array.from(values))), String(bad)).toThrow(/non-finite value at 4/);
      // Unaligned (the copying path) too.
      expect(decode(shifted(encodeServeReply(42, 2, 1, Float32Array.from(values)), 1)), `${bad} unaligned`).toThrow(ServeMessageError);
    }
  });

  it("a wrong version byte", () => {
    for (const version of [0, SERVE_FRAME_VERSION + 1, 255]) {
      const bytes = good();
      bytes[1] = version;
      expect(decode(bytes), `version ${version}`).toThrow(/version/);
    }
  });

  it("non-zero reserved bytes", () => {
    for (const index of [2, 3]) {
      const bytes = good();
      bytes[index] = 1;
      expect(decode(bytes), `byte ${index}`).toThrow(/reserved/);
    }
  });

  it("a frame shorter than its header", () => {
    const bytes = good();
    for (const length of [0, 1, SERVE_HEADER_BYTES - 1]) expect(decode(bytes.slice(0, length)), `${length} bytes`).toThrow(/shorter than/);
  });

  it("more rows than MAX_PREDICT_ROWS", () => {
    const rows = MAX_PREDICT_ROWS + 1;
    const bytes = rawFrame({ kind: ServeFrameKind.reply, id: 42, rows }, new Uint8Array(rows * 4));
    expect(() => decodeServeReply(bytes, 1, holding(42, rows))).toThrow(/rows \(at most/);
    expect(() => decodeServeReply(rawFrame({ kind: ServeFrameKind.reply, id: 42, rows: 0xffffffff }), 1, () => 0xffffffff)).toThrow(ServeMessageError);
  });

  it("a frame of an unknown kind, or a request frame from a tab", () => {
    for (const kind of [0, ServeFrameKind.request, 4, 255]) {
      expect(decode(rawFrame({ kind, id: 42, rows: 2 }, f32Bytes(outputs))), `kind ${kind}`).toThrow(/kind/);
    }
  });

  it("an error frame whose text is too long, not JSON, not a string, or not ASCII", () => {
    const text = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
    const error = (payload: Uint8Array) => decode(rawFrame({ kind: ServeFrameKind.error, id: 42, rows: 0 }, payload));
    expect(error(text(JSON.stringify("x".repeat(1_200))))).toThrow(/bytes/);
    expect(error(text("not json"))).toThrow(ServeMessageError);
    expect(error(text("42"))).toThrow(/JSON string/);
    expect(error(Uint8Array.from([0x22, 0xc3, 0xa9, 0x22]))).toThrow(ServeMessageError);
    // A short one written by hand is fine.
    expect(decodeServeReply(rawFrame({ kind: ServeFrameKind.error, id: 42, rows: 0 }, text('"oom"')), CLASSES, holding(42, 2))).toEqual({ kind: "error", id: 42, message: "oom" });
  });
});

describe("decodeServeRequest refuses", () => {
  const inputs = [1, 2, 3, 4, 5, 6, 7, 8];

  it("a non-finite input", () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const values = [...inputs];
      values[7] = bad;
      expect(() => decodeServeRequest(encodeServeRequest(1, 2, Float32Array.from(values)), FEATURES), String(bad)).toThrow(/non-finite value at 7/);
      expect(() => decodeServeRequest(shifted(encodeServeRequest(1, 2, Float32Array.from(values)), 3), FEATURES), `${bad} unaligned`).toThrow(ServeMessageError);
    }
  });

  it("inputs of the wrong length", () => {
    expect(() => decodeServeRequest(encodeServeRequest(1, 2, Float32Array.from(inputs)), FEATURES + 1)).toThrow(/bytes/);
    expect(() => decodeServeRequest(encodeServeRequest(1, 3, Float32Array.from(inputs)), FEATURES)).toThrow(ServeMessageError);
    expect(() => decodeServeRequest(encodeServeRequest(1, 2, Float32Array.from(inputs.slice(1))), FEATURES)).toThrow(ServeMessageError);
    expect(() => decodeServeRequest(rawFrame({ kind: ServeFrameKind.request, id: 1, rows: 2 }, new Uint8Array(33)), FEATURES)).toThrow(ServeMessageError);
  });

  it("a frame of another kind, version or header", () => {
    const reply = encodeServeReply(1, 2, 0, Float32Array.from(inputs));
    expect(() => decodeServeRequest(reply, FEATURES)).toThrow(/kind 2/);
    expect(() => decodeServeRequest(encodeServeError(1, "x"), FEATURES)).toThrow(ServeMessageError);
    const bytes = encodeServeRequest(1, 2, Float32Array.from(inputs));
    bytes[1] = SERVE_FRAME_VERSION + 1;
    expect(() => decodeServeRequest(bytes, FEATURES)).toThrow(/version/);
    expect(() => decodeServeRequest(new Uint8Array(SERVE_HEADER_BYTES - 1), FEATURES)).toThrow(/shorter than/);
    const rows = MAX_PREDICT_ROWS + 1;
    expect(() => decodeServeRequest(rawFrame({ kind: ServeFrameKind.request, id: 1, rows }, new Uint8Array(rows * 4)), 1)).toThrow(/at most/);
  });
});

describe("serve control messages", () => {
  const hello = { type: "serve-hello", protocol: PROTOCOL_VERSION, peerId: "w-a1", sessionToken: TOKEN, maxBatch: 64 };
  const welcome = { type: "serve-welcome", features: 784, classes: 10, round: 12, maxWaitMs: 5, maxBatch: 32 };

  it("parses the tab's hello and loaded messages", () => {
    expect(parseServeTabMessage(JSON.stringify(hello))).toEqual(hello);
    expect(parseServeTabMessage(JSON.stringify({ type: "serve-loaded", round: 0 }))).toEqual({ type: "serve-loaded", round: 0 });
    expect(parseServeTabMessage(JSON.stringify({ ...hello, maxBatch: MAX_PREDICT_ROWS }))).toMatchObject({ maxBatch: MAX_PREDICT_ROWS });
  });

  it("parses the server's welcome and model messages", () => {
    expect(parseServeServerMessage(JSON.stringify(welcome))).toEqual(welcome);
    expect(parseServeServerMessage(JSON.stringify({ ...welcome, maxWaitMs: 0 }))).toMatchObject({ maxWaitMs: 0 });
    expect(parseServeServerMessage(JSON.stringify({ type: "serve-model", round: 3 }))).toEqual({ type: "serve-model", round: 3 });
  });

  it("throws ServeMessageError on text that is not JSON", () => {
    for (const raw of ["", "{", "serve-hello", "{'type':'serve-loaded'}"]) {
      expect(() => parseServeTabMessage(raw), raw).toThrow(ServeMessageError);
      expect(() => parseServeServerMessage(raw), raw).toThrow(/not JSON/);
    }
  });

  it("throws ServeMessageError on an unknown type, or a message meant for the other side", () => {
    for (const message of [{ type: "serve-bye" }, welcome, { type: "serve-model", round: 1 }, null, 7, []]) {
      expect(() => parseServeTabMessage(JSON.stringify(message)), JSON.stringify(message)).toThrow(ServeMessageError);
    }
    for (const message of [{ type: "serve-bye" }, hello, { type: "serve-loaded", round: 1 }, "serve-model"]) {
      expect(() => parseServeServerMessage(JSON.stringify(message)), JSON.stringify(message)).toThrow(ServeMessageError);
    }
  });

  it("throws ServeMessageError on another protocol version", () => {
    for (const protocol of [PROTOCOL_VERSION - 1, PROTOCOL_VERSION + 1, String(PROTOCOL_VERSION)]) {
      expect(() => parseServeTabMessage(JSON.stringify({ ...hello, protocol })), String(protocol)).toThrow(/bad serve message/);
    }
  });

  it("throws ServeMessageError on a bad peer id, token, batch size or round", () => {
    const bad: Record<string, unknown>[] = [
      { peerId: "" },
      { peerId: "has space" },
      { peerId: "-leading" },
      { peerId: "trailing_" },
      { peerId: "a".repeat(65) },
      { peerId: 7 },
      { sessionToken: "short" },
      { sessionToken: `${TOKEN}!` },
      { maxBatch: 0 },
      { maxBatch: 1.5 },
      { maxBatch: MAX_PREDICT_ROWS + 1 },
      { extra: true },
    ];
    for (const change of bad) expect(() => parseServeTabMessage(JSON.stringify({ ...hello, ...change })), JSON.stringify(change)).toThrow(ServeMessageError);
    const { peerId: _peerId, ...noPeer } = hello;
    expect(() => parseServeTabMessage(JSON.stringify(noPeer))).toThrow(ServeMessageError);
    for (const round of [-1, 1.5, 2 ** 32]) expect(() => parseServeTabMessage(JSON.stringify({ type: "serve-loaded", round })), String(round)).toThrow(ServeMessageError);
    for (const change of [{ features: 0 }, { classes: 2.5 }, { round: -1 }, { maxWaitMs: 1_001 }, { maxWaitMs: -1 }]) {
      expect(() => parseServeServerMessage(JSON.stringify({ ...welcome, ...change })), JSON.stringify(change)).toThrow(ServeMessageError);
    }
  });
});

describe("PredictRequestSchema", () => {
  const ok = (value: unknown): boolean => v.safeParse(PredictRequestSchema, value).success;

  it("accepts rows of finite numbers", () => {
    expect(ok({ inputs: [[0, 1.5, -3]] })).toBe(true);
    expect(ok({ inputs: [[1], [2]] })).toBe(true);
    expect(ok({ inputs: Array.from({ length: MAX_PREDICT_ROWS }, () => [0]) })).toBe(true);
  });

  it("rejects rows holding something other than numbers", () => {
    for (const inputs of [[["1", 2]], [[null]], [[true]], [[[1]]], [[{}]], [1, 2], ["12"], [null]]) {
      expect(ok({ inputs }), JSON.stringify(inputs)).toBe(false);
    }
  });

  it("rejects non-finite numbers, no inputs, too many rows, and other shapes", () => {
    expect(ok({ inputs: [[Number.NaN]] })).toBe(false);
    expect(ok({ inputs: [[1, Number.POSITIVE_INFINITY]] })).toBe(false);
    expect(ok({ inputs: [] })).toBe(false);
    expect(ok({ inputs: Array.from({ length: MAX_PREDICT_ROWS + 1 }, () => [0]) })).toBe(false);
    expect(ok({})).toBe(false);
    expect(ok({ inputs: [[1]], extra: 1 })).toBe(false);
    expect(ok([[1]])).toBe(false);
  });
});
