/** A peer's id as the transport knows it (a PeerJS id in the browser). */
export type PeerId = string;

/**
 * The one port all-reduce needs from the network. Implementations: packages/p2p (WebRTC data
 * channels) and test/memory-transport.ts (seeded, in-memory).
 *
 * Contract:
 * - `send` hands one frame to the link to `to`. It resolves once the link has accepted the frame
 *   (this is where back-pressure happens) and rejects if the link is gone. Frames are delivered
 *   whole and at most once; all-reduce does not rely on their order.
 * - `onFrame` delivers every frame received from any peer. The bytes belong to the handler only for
 *   the duration of the call.
 * - `onPeerGone` fires when a link to a peer closes or fails; all-reduce treats it as that peer dying.
 */
export interface Transport {
  readonly self: PeerId;
  send(to: PeerId, frame: Uint8Array<ArrayBuffer>): Promise<void>;
  onFrame(handler: (from: PeerId, frame: Uint8Array) => void): () => void;
  onPeerGone(handler: (peer: PeerId, reason: string) => void): () => void;
}
