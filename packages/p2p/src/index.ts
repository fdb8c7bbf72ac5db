export { createPeerTransport, FRAME_CHANNEL_LABEL, type PeerTransport } from "./transport.ts";
export { DEFAULT_PEER_TRANSPORT_OPTIONS, resolvePeerTransportOptions, type PeerTransportOptions } from "./options.ts";
export type { LinkStats } from "./link.ts";
export { fetchSignallingConfig, openPeer, PEER_OPEN_TIMEOUT_MS, type SignallingConfig } from "./peer.ts";
