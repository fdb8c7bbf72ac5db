import { MAX_MESSAGE_BYTES } from "./wire.ts";

/** Tunables of the WebRTC transport, with their relations checked at construction. */
export type PeerTransportOptions = {
  /** Opening a data connection (ICE + DTLS + SCTP) must finish within this. */
  connectTimeoutMs: number;
  /** A send waiting for the channel's buffer to drain gives up after this (the far side is stuck). */
  drainTimeoutMs: number;
  /** Stop handing frames to the channel while more than this many bytes are queued in it. */
  highWaterMarkBytes: number;
  /** Resume when the queue falls to this (the channel's bufferedAmountLowThreshold). */
  lowWaterMarkBytes: number;
  /**
   * Bytes one logical channel may have waiting for room on one link; a send beyond it is refused at
   * once (ChannelQueueFullError) without touching the other channels' queues.
   */
  maxQueuedBytesPerChannel: number;
};

export const DEFAULT_PEER_TRANSPORT_OPTIONS: PeerTransportOptions = {
  connectTimeoutMs: 15_000,
  drainTimeoutMs: 30_000,
  highWaterMarkBytes: 2 * 1024 * 1024,
  lowWaterMarkBytes: 512 * 1024,
  maxQueuedBytesPerChannel: 8 * 1024 * 1024,
};

/** Chromium closes a data channel whose send queue exceeds 16 MiB; stay well clear of it. */
const CHANNEL_QUEUE_LIMIT_BYTES = 16 * 1024 * 1024;

export function resolvePeerTransportOptions(overrides: Partial<PeerTransportOptions> = {}): PeerTransportOptions {
  const o = { ...DEFAULT_PEER_TRANSPORT_OPTIONS, ...overrides };
  if (!(o.connectTimeoutMs > 0 && o.drainTimeoutMs > 0)) throw new RangeError("timeouts must be positive");
  if (!(o.lowWaterMarkBytes >= 0 && o.lowWaterMarkBytes < o.highWaterMarkBytes)) {
    throw new RangeError(`lowWaterMarkBytes (${o.lowWaterMarkBytes}) must be below highWaterMarkBytes (${o.highWaterMarkBytes})`);
  }
  if (o.highWaterMarkBytes > CHANNEL_QUEUE_LIMIT_BYTES / 2) {
    throw new RangeError(`highWaterMarkBytes must stay at most ${CHANNEL_QUEUE_LIMIT_BYTES / 2}`);
  }
  if (!(o.maxQueuedBytesPerChannel >= MAX_MESSAGE_BYTES)) {
    throw new RangeError(`maxQueuedBytesPerChannel (${o.maxQueuedBytesPerChannel}) must hold at least one message of MAX_MESSAGE_BYTES=${MAX_MESSAGE_BYTES}`);
  }
  return o;
}
