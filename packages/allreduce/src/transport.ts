/** A peer's id as the transport knows it (a PeerJS id in the browser). */
export type PeerId = string;

/**
 * The one port all-reduce needs from the network. Implementations: packages/p2p (one logical
 * channel of its WebRTC links: `transport.channel("allreduce")`) and test/memory-network.ts
 * (seeded, in-memory).
 *
 * Contract:
 * - `send` hands one frame to the link to `to`. It resolves once the link has accepted the frame
 *   (this is where back-pressure happens) and rejects if the link is gone or the frame is larger
 *   than the implementation carries (p2p: MAX_CHANNEL_FRAME_BYTES, 4 bytes under 256 KiB). The
 *   frame is the transport's once given: all-reduce never writes to it again. Frames are
 *   delivered whole and at most once; all-reduce does not rely on their order.
 * - `onFrame` delivers every frame received from any peer on this transport, and nothing else: a
 *   p2p channel never hands it another channel's frames or a message it could not route (those
 *   are the p2p transport's violations). The bytes belong to the handler only for the duration of
 *   the call.
 * - `onPeerGone` fires when a link to a peer closes or fails; all-reduce treats it as that peer dying.
 */
export interface Transport {
  readonly self: PeerId;
  send(to: PeerId, frame: Uint8Array<ArrayBuffer>): Promise<void>;
  onFrame(handler: (from: PeerId, frame: Uint8Array) => void): () => void;
  onPeerGone(handler: (peer: PeerId, reason: string) => void): () => void;
}
