// The wire format of one peer link: logical channels multiplexed over one data channel. Pure: no
// I/O, no timers, so every rule here is unit-tested (test/wire.test.ts).
//
// Every data-channel message is one channel frame:
//
//   offset size field
//   0      1    channel id (CHANNEL_IDS; 0 and every unlisted id are refused)
//   1      3    reserved, must be 0 (a later format change is a refusal, not a misreading)
//   4      ...  payload: one frame of that channel, opaque to the link
//
// The header is 4 bytes, not 1, so a payload starts 4-byte aligned in the received buffer: the
// all-reduce's float32 tensor chunks are then viewed in place instead of copied to realign them.
import { SCTP_MESSAGE_LIMIT_BYTES, TRANSPORT_HEADER_BYTES } from "@crowdtrain/protocol";

/**
 * The logical channels of a link and their ids on the wire: the one place they are numbered. An
 * id, once given, keeps its meaning; a new channel takes a new id.
 */
export const CHANNEL_IDS = {
  /** Gradient all-reduce frames (packages/allreduce decodes them). */
  allreduce: 1,
  /** Pipeline-parallel activations. */
  activations: 2,
  /** Inference requests and replies. */
  inference: 3,
  /** Small coordination messages between peers. */
  control: 4,
  /** The lab page's throughput measurements (e2e benchmarks); the product page never uses it. */
  bench: 5,
} as const;

export type ChannelName = keyof typeof CHANNEL_IDS;

/** Every channel, in id order: the order the send scheduler serves them in turn. */
export const CHANNEL_NAMES: readonly ChannelName[] = (Object.keys(CHANNEL_IDS) as ChannelName[]).sort((a, b) => CHANNEL_IDS[a] - CHANNEL_IDS[b]);

const NAME_BY_ID = new Map<number, ChannelName>(CHANNEL_NAMES.map((name) => [CHANNEL_IDS[name], name]));

/** The channel header is the transport header protocol leaves room for in MAX_FRAME_BYTES. */
export const CHANNEL_HEADER_BYTES = TRANSPORT_HEADER_BYTES;
/** Chromium's SCTP transport refuses larger messages (and closes the channel if one is sent). */
export const MAX_MESSAGE_BYTES = SCTP_MESSAGE_LIMIT_BYTES;
/** Largest frame a channel carries: one message, less the channel header. */
export const MAX_CHANNEL_FRAME_BYTES = MAX_MESSAGE_BYTES - CHANNEL_HEADER_BYTES;

export function isChannelName(name: string): name is ChannelName {
  return Object.hasOwn(CHANNEL_IDS, name);
}

/**
 * Why a received message was refused. The link drops it; no channel sees it.
 * - not-binary: a text message (the far side does not speak raw binary at all)
 * - truncated: shorter than the channel header (an empty message included)
 * - unknown-channel: a channel id this build does not know
 * - reserved-bits: the reserved header bytes are not zero (another wire format)
 */
export type ChannelViolationKind = "not-binary" | "truncated" | "unknown-channel" | "reserved-bits";
export type ChannelViolation = { kind: ChannelViolationKind; detail: string };

export type DecodedMessage = { ok: true; channel: ChannelName; payload: Uint8Array } | { ok: false; violation: ChannelViolation };

/**
 * One wire message carrying `frame` on `channel`. Always a fresh buffer: the caller may reuse
 * `frame` as soon as this returns. Throws RangeError if the frame does not fit one message.
 */
export function encodeChannelFrame(channel: ChannelName, frame: Uint8Array): Uint8Array<ArrayBuffer> {
  if (!isChannelName(channel)) throw new RangeError(`unknown channel ${String(channel)}`);
  if (frame.byteLength > MAX_CHANNEL_FRAME_BYTES) {
    throw new RangeError(`a ${channel} frame of ${frame.byteLength} bytes exceeds MAX_CHANNEL_FRAME_BYTES=${MAX_CHANNEL_FRAME_BYTES}`);
  }
  const message = new Uint8Array(CHANNEL_HEADER_BYTES + frame.byteLength);
  message[0] = CHANNEL_IDS[channel];
  message.set(frame, CHANNEL_HEADER_BYTES);
  return message;
}

/**
 * Splits a received message into its channel and payload. The payload is a view into `message`
 * (no copy), starting CHANNEL_HEADER_BYTES in, so it is valid exactly as long as `message` is.
 */
export function decodeChannelFrame(message: ArrayBuffer | Uint8Array): DecodedMessage {
  const bytes = message instanceof Uint8Array ? message : new Uint8Array(message);
  if (bytes.byteLength < CHANNEL_HEADER_BYTES) {
    const what = bytes.byteLength === 0 ? "an empty message" : `a message of ${bytes.byteLength} bytes`;
    return refuse("truncated", `${what}, shorter than the ${CHANNEL_HEADER_BYTES}-byte channel header`);
  }
  const id = bytes[0] as number;
  const channel = NAME_BY_ID.get(id);
  if (channel === undefined) return refuse("unknown-channel", `unknown channel id ${id}`);
  if (bytes[1] !== 0 || bytes[2] !== 0 || bytes[3] !== 0) {
    return refuse("reserved-bits", `reserved header bytes ${bytes[1]},${bytes[2]},${bytes[3]} on channel ${channel} are not zero`);
  }
  return { ok: true, channel, payload: bytes.subarray(CHANNEL_HEADER_BYTES) };
}

function refuse(kind: ChannelViolationKind, detail: string): DecodedMessage {
  return { ok: false, violation: { kind, detail } };
}
