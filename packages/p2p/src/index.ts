export { createPeerTransport, FRAME_CHANNEL_LABEL, type PeerChannel, type PeerTransport } from "./transport.ts";
export { DEFAULT_PEER_TRANSPORT_OPTIONS, resolvePeerTransportOptions, type PeerTransportOptions } from "./options.ts";
export type { ChannelStats, LinkStats } from "./link.ts";
export { ChannelQueueFullError } from "./send-queues.ts";
export type { ViolationHandler } from "./demux.ts";
export {
  CHANNEL_HEADER_BYTES,
  CHANNEL_IDS,
  CHANNEL_NAMES,
  MAX_CHANNEL_FRAME_BYTES,
  MAX_MESSAGE_BYTES,
  type ChannelName,
  type ChannelViolation,
  type ChannelViolationKind,
} from "./wire.ts";
export { fetchSignallingConfig, openPeer, PEER_OPEN_TIMEOUT_MS, type ConfigAuth, type SignallingConfig } from "./peer.ts";
