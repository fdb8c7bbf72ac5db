import type { PeerId, Transport } from "@crowdtrain/allreduce";
import type { DataConnection, Peer } from "peerjs";
import { Link, type LinkStats } from "./link.ts";
import { resolvePeerTransportOptions, type PeerTransportOptions } from "./options.ts";

/** Label of the data connections that carry frames; connections with other labels are not ours. */
export const FRAME_CHANNEL_LABEL = "crowdtrain-frames";

export interface PeerTransport extends Transport {
  /** Opens (or reuses) a link to each peer; rejects naming the first that did not open in time. */
  connect(peers: readonly PeerId[]): Promise<void>;
  linkStats(): Record<PeerId, LinkStats>;
  /** Closes every link; the Peer itself belongs to the caller. */
  close(): void;
}

/**
 * The all-reduce Transport on PeerJS data connections: reliable, ordered channels carrying raw
 * binary frames. A link is opened by whoever first needs to send; frames arriving on any link to a
 * peer are delivered, so two peers dialling each other at once is harmless.
 */
export function createPeerTransport(peer: Peer, overrides: Partial<PeerTransportOptions> = {}): PeerTransport {
  const options = resolvePeerTransportOptions(overrides);
  const links = new Map<PeerId, Link[]>();
  const dialing = new Map<PeerId, Promise<Link>>();
  const frameHandlers = new Set<(from: PeerId, frame: Uint8Array) => void>();
  const goneHandlers = new Set<(peer: PeerId, reason: string) => void>();
  let closed = false;

  const gone = (link: Link, reason: string): void => {
    if (!link.markClosed(reason)) return;
    const remaining = (links.get(link.peer) ?? []).filter((l) => l !== link);
    if (remaining.length > 0) links.set(link.peer, remaining);
    else links.delete(link.peer);
    link.connection.close();
    for (const handler of goneHandlers) handler(link.peer, reason);
  };

  const adopt = (connection: DataConnection): Link => {
    const link = new Link(connection, options);
    links.set(connection.peer, [...(links.get(connection.peer) ?? []), link]);
    connection.on("data", (data) => {
      if (!(data instanceof ArrayBuffer)) {
        gone(link, `sent a non-binary message (${typeof data}) on the frame channel`);
        return;
      }
      link.stats.framesReceived++;
      link.stats.bytesReceived += data.byteLength;
      const bytes = new Uint8Array(data);
      for (const handler of frameHandlers) handler(connection.peer, bytes);
    });
    connection.on("close", () => gone(link, "data connection closed"));
    connection.on("error", (error) => gone(link, `data connection error: ${error.message}`));
    // Chromium reports a vanished tab as ICE 'disconnected' seconds before the channel closes.
    connection.on("iceStateChanged", (state) => {
      if (state === "disconnected" || state === "failed" || state === "closed") gone(link, `ICE ${state}`);
    });
    return link;
  };

  const onIncoming = (connection: DataConnection): void => {
    if (closed || connection.label !== FRAME_CHANNEL_LABEL) return;
    adopt(connection);
  };
  peer.on("connection", onIncoming);

  const openLink = (to: PeerId): Promise<Link> => {
    const existing = (links.get(to) ?? []).find((l) => l.isOpen);
    if (existing !== undefined) return Promise.resolve(existing);
    const pending = dialing.get(to);
    if (pending !== undefined) return pending;
    const dial = new Promise<Link>((resolve, reject) => {
      const connection = peer.connect(to, { label: FRAME_CHANNEL_LABEL, serialization: "raw", reliable: true });
      const timer = setTimeout(() => {
        connection.close();
        reject(new Error(`link to ${to} did not open within connectTimeoutMs=${options.connectTimeoutMs}`));
      }, options.connectTimeoutMs);
      connection.once("open", () => {
        clearTimeout(timer);
        resolve(adopt(connection));
      });
      connection.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`link to ${to} failed to open: ${error.message}`));
      });
    }).finally(() => dialing.delete(to));
    dialing.set(to, dial);
    return dial;
  };

  return {
    self: peer.id,
    async send(to, frame) {
      if (closed) throw new Error("transport is closed");
      const link = await openLink(to);
      await link.send(frame);
    },
    onFrame(handler) {
      frameHandlers.add(handler);
      return () => frameHandlers.delete(handler);
    },
    onPeerGone(handler) {
      goneHandlers.add(handler);
      return () => goneHandlers.delete(handler);
    },
    async connect(peers) {
      await Promise.all(peers.filter((p) => p !== peer.id).map(openLink));
    },
    linkStats() {
      const out: Record<PeerId, LinkStats> = {};
      for (const [id, list] of links) {
        const sum: LinkStats = { framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
        for (const l of list) for (const key of Object.keys(sum) as (keyof LinkStats)[]) sum[key] += l.stats[key];
        out[id] = sum;
      }
      return out;
    },
    close() {
      if (closed) return;
      closed = true;
      peer.off("connection", onIncoming);
      for (const list of links.values()) for (const l of list) {
        l.markClosed("transport closed");
        l.connection.close();
      }
      links.clear();
    },
  };
}
