import type { PeerId, Transport } from "@crowdtrain/allreduce";
import { FRAME_HEADER_BYTES } from "@crowdtrain/protocol";
import type { VirtualClock } from "./virtual-clock.ts";

/** One volunteer's access link, as the simulator models it. */
export type Link = {
  /** Uplink and downlink capacity, bits per second. */
  upBps: number;
  downBps: number;
  /** Round trip from this peer to the network's core, ms: a path's RTT is the sum of both ends'. */
  rttMs: number;
};

export type NetworkOptions = {
  /**
   * Each payload byte on the wire stands for this many bytes of the modelled model: the simulator
   * runs the real all-reduce on a short vector and charges the links for the real one (headers are
   * charged as they are).
   */
  payloadScale: number;
  /** How long after a peer dies the others' links report it gone (a closed tab's data channels). */
  goneAfterMs: number;
};

type Endpoint = {
  link: Link;
  alive: boolean;
  upFreeAt: number;
  downFreeAt: number;
  bytesSent: number;
  frameHandlers: Set<(from: PeerId, frame: Uint8Array) => void>;
  goneHandlers: Set<(peer: PeerId, reason: string) => void>;
};

/**
 * Links between simulated peers in virtual time. A frame leaves when the sender's uplink is free and
 * has serialised it (its send() resolves then: the all-reduce's back-pressure), crosses the path's
 * one-way latency ((rtt_a + rtt_b)/2), and is delivered once the receiver's downlink has serialised
 * it too. Both access links are the bottlenecks (the core is not); frames are never lost or
 * reordered on one path. A dead peer's frames vanish, and the others hear it is gone `goneAfterMs`
 * later.
 */
export class SimNetwork {
  private readonly endpoints = new Map<PeerId, Endpoint>();

  constructor(
    private readonly clock: VirtualClock,
    private readonly options: NetworkOptions,
  ) {}

  add(id: PeerId, link: Link): Transport {
    const self: Endpoint = { link, alive: true, upFreeAt: 0, downFreeAt: 0, bytesSent: 0, frameHandlers: new Set(), goneHandlers: new Set() };
    this.endpoints.set(id, self);
    return {
      self: id,
      send: (to, frame) => this.send(id, self, to, frame),
      onFrame: (handler) => {
        self.frameHandlers.add(handler);
        return () => self.frameHandlers.delete(handler);
      },
      onPeerGone: (handler) => {
        self.goneHandlers.add(handler);
        return () => self.goneHandlers.delete(handler);
      },
    };
  }

  /** The peer dies: its frames stop, and every live peer hears of it after goneAfterMs. */
  kill(id: PeerId, reason: string): void {
    const dead = this.endpoints.get(id);
    if (dead === undefined || !dead.alive) return;
    dead.alive = false;
    this.clock.setTimeout(() => {
      for (const [other, peer] of this.endpoints) {
        if (other === id || !peer.alive) continue;
        for (const handler of peer.goneHandlers) handler(id, reason);
      }
    }, this.options.goneAfterMs);
  }

  /** Wire bytes a peer has sent (payloads scaled), for bytes-per-peer figures. */
  bytesSent(id: PeerId): number {
    return this.endpoints.get(id)?.bytesSent ?? 0;
  }

  /** Seconds to move `bytes` over a link of `bps`. */
  static transferMs(bytes: number, bps: number): number {
    return (bytes * 8 * 1000) / bps;
  }

  /** The one-way latency between two peers, ms. */
  oneWayMs(a: PeerId, b: PeerId): number {
    const [x, y] = [this.endpoints.get(a), this.endpoints.get(b)];
    if (x === undefined || y === undefined) throw new Error(`no such peer ${x === undefined ? a : b}`);
    return (x.link.rttMs + y.link.rttMs) / 2;
  }

  private send(from: PeerId, self: Endpoint, to: PeerId, frame: Uint8Array): Promise<void> {
    if (!self.alive) return Promise.reject(new Error(`${from} is dead`));
    const target = this.endpoints.get(to);
    if (target === undefined || !target.alive) return Promise.reject(new Error(`link ${from}->${to} is closed`));
    const wire = FRAME_HEADER_BYTES + (frame.byteLength - FRAME_HEADER_BYTES) * this.options.payloadScale;
    self.bytesSent += wire;
    const now = this.clock.now();
    const departs = Math.max(now, self.upFreeAt) + SimNetwork.transferMs(wire, self.link.upBps);
    self.upFreeAt = departs;
    const arrives = departs + this.oneWayMs(from, to);
    const delivered = Math.max(arrives, target.downFreeAt) + SimNetwork.transferMs(wire, target.link.downBps);
    target.downFreeAt = delivered;
    // The receiver's handler may keep only a view for the call: hand it its own copy.
    const bytes = frame.slice();
    this.clock.setTimeout(() => {
      if (!self.alive || !target.alive) return;
      for (const handler of target.frameHandlers) handler(from, bytes);
    }, delivered - now);
    return new Promise<void>((resolve) => this.clock.setTimeout(resolve, departs - now));
  }
}
