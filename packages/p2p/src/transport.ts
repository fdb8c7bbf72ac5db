import type { PeerId, Transport } from "@crowdtrain/allreduce";
import type { DataConnection, Peer } from "peerjs";
import { ChannelDemux, type ViolationHandler } from "./demux.ts";
import { Link, type ChannelStats, type LinkStats } from "./link.ts";
import { resolvePeerTransportOptions, type PeerTransportOptions } from "./options.ts";
import { encodeChannelFrame, isChannelName, type ChannelName } from "./wire.ts";

/** PeerJS label of the data connections that carry our channel frames; connections with other labels are not ours. */
export const FRAME_CHANNEL_LABEL = "crowdtrain-frames";

/**
 * One logical channel of every link: the all-reduce Transport, seeing only this channel's frames.
 * `send` resolves once the data channel took the frame; `onPeerGone` fires for every link that
 * closes (links are shared by all channels).
 */
export interface PeerChannel extends Transport {
  readonly name: ChannelName;
  /** This channel's counters per peer (payload bytes; queued = waiting for room on the link). */
  stats(): Record<PeerId, ChannelStats>;
}

export interface PeerTransport {
  readonly self: PeerId;
  /** The channel `name` (the same object on every call); see wire.ts for the channels. */
  channel(name: ChannelName): PeerChannel;
  /** A link to `peer` closed or failed; every channel's onPeerGone hears the same. */
  onPeerGone(handler: (peer: PeerId, reason: string) => void): () => void;
  /**
   * A received message was refused (wire.ts ChannelViolation): dropped before any channel saw it.
   * The link stays open, except after a non-binary message, which closes it (see README).
   */
  onViolation(handler: ViolationHandler): () => void;
  /** Opens (or reuses) a link to each peer; rejects naming the first that did not open in time. */
  connect(peers: readonly PeerId[]): Promise<void>;
  /** Whole-link counters per peer, wire bytes. */
  linkStats(): Record<PeerId, LinkStats>;
  /** Closes every link, failing the sends still waiting; the Peer itself belongs to the caller. */
  close(): void;
}

/**
 * Logical channels over PeerJS data connections: one reliable, ordered data channel per link
 * carrying raw binary messages, each a channel frame (wire.ts). A link is opened by whoever first
 * needs to send; messages arriving on any link to a peer are delivered, so two peers dialling each
 * other at once is harmless.
 */
export function createPeerTransport(peer: Peer, overrides: Partial<PeerTransportOptions> = {}): PeerTransport {
  const options = resolvePeerTransportOptions(overrides);
  const links = new Map<PeerId, Link[]>();
  const dialing = new Map<PeerId, Promise<Link>>();
  const demux = new ChannelDemux();
  const goneHandlers = new Set<(peer: PeerId, reason: string) => void>();
  const channels = new Map<ChannelName, PeerChannel>();
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
        // Not raw binary at all: the far side speaks another serialization, so nothing it sends
        // on this link can be trusted to be framed; report it and close the link.
        const kind = Object.prototype.toString.call(data);
        demux.reportViolation(connection.peer, { kind: "not-binary", detail: `a non-binary message (${kind}) on the frame link` });
        gone(link, `sent a non-binary message (${kind}) on the frame link`);
        return;
      }
      const delivered = demux.deliver(connection.peer, data);
      link.countReceived(delivered?.channel, data.byteLength);
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

  const onPeerGone = (handler: (peer: PeerId, reason: string) => void): (() => void) => {
    goneHandlers.add(handler);
    return () => goneHandlers.delete(handler);
  };

  const makeChannel = (name: ChannelName): PeerChannel => ({
    name,
    self: peer.id,
    async send(to, frame) {
      if (closed) throw new Error("transport is closed");
      // Encoded (copied) before any wait, so the caller's bytes are read now, not when the link opens.
      const message = encodeChannelFrame(name, frame);
      const link = await openLink(to);
      await link.send(name, message);
    },
    onFrame: (handler) => demux.onFrame(name, handler),
    onPeerGone,
    stats() {
      const out: Record<PeerId, ChannelStats> = {};
      for (const [id, list] of links) out[id] = sumStats(list.map((l) => l.channelStats(name)));
      return out;
    },
  });

  return {
    self: peer.id,
    channel(name) {
      if (!isChannelName(name)) throw new RangeError(`unknown channel ${String(name)}`);
      let found = channels.get(name);
      if (found === undefined) {
        found = makeChannel(name);
        channels.set(name, found);
      }
      return found;
    },
    onPeerGone,
    onViolation: (handler) => demux.onViolation(handler),
    async connect(peers) {
      await Promise.all(peers.filter((p) => p !== peer.id).map(openLink));
    },
    linkStats() {
      const out: Record<PeerId, LinkStats> = {};
      for (const [id, list] of links) out[id] = sumStats(list.map((l) => l.stats));
      return out;
    },
    close() {
      if (closed) return;
      closed = true;
      peer.off("connection", onIncoming);
      for (const list of links.values()) {
        for (const l of list) {
          l.markClosed("transport closed");
          l.connection.close();
        }
      }
      links.clear();
    },
  };
}

/** Adds up the counters of a peer's links (two peers dialling each other at once hold two). */
function sumStats<T extends Record<string, number>>(all: readonly T[]): T {
  const sum = {} as Record<string, number>;
  for (const stats of all) for (const [key, value] of Object.entries(stats)) sum[key] = (sum[key] ?? 0) + value;
  return sum as T;
}
