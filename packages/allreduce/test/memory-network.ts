import { mulberry32 } from "@crowdtrain/protocol";
import { systemClock, type Clock, type PeerId, type Transport } from "../src/index.ts";

/**
 * An in-memory network for unit tests (after yjs' TestConnector): every frame sent waits in one
 * pool and is delivered in a seeded random order, across and within links, so the all-reduce may
 * not rely on ordering. Peers can be killed (links close, neighbours are told), silenced (a hung
 * tab: frames vanish, nobody is told) or made to die after sending k frames.
 */
export type MemoryNetwork = {
  transport(id: PeerId): Transport;
  kill(id: PeerId, reason?: string): void;
  silence(id: PeerId): void;
  killAfterFrames(id: PeerId, frames: number): void;
  /** Puts raw bytes on the wire as if `from` had sent them. */
  inject(from: PeerId, to: PeerId, bytes: Uint8Array<ArrayBuffer>): void;
  /** Resolves when nothing is in flight. */
  flush(): Promise<void>;
  framesSent(id: PeerId): number;
};

type Message = { from: PeerId; to: PeerId; bytes: Uint8Array<ArrayBuffer> };
type Endpoint = {
  frameHandlers: Set<(from: PeerId, frame: Uint8Array) => void>;
  goneHandlers: Set<(peer: PeerId, reason: string) => void>;
  alive: boolean;
  silent: boolean;
  sent: number;
  dieAfter: number;
};

/** Seeded uniform [0, 1) draws (the protocol's Mulberry32), for delivery order and test fixtures. */
export const seededRandom: (seed: number) => () => number = mulberry32;

export function createMemoryNetwork(seed: number, clock: Clock = systemClock()): MemoryNetwork {
  const random = seededRandom(seed);
  const endpoints = new Map<PeerId, Endpoint>();
  const pool: Message[] = [];
  let scheduled = false;
  const idleWaiters: (() => void)[] = [];

  const endpoint = (id: PeerId): Endpoint => {
    const found = endpoints.get(id);
    if (found === undefined) throw new Error(`no such peer ${id}`);
    return found;
  };

  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    clock.setTimeout(deliverSome, 0);
  };

  // Delivers a random batch from the pool, then yields to timers, so time passes while frames fly.
  function deliverSome(): void {
    scheduled = false;
    for (let budget = 64; budget > 0 && pool.length > 0; budget--) {
      const index = Math.floor(random() * pool.length);
      const message = pool[index] as Message;
      pool[index] = pool[pool.length - 1] as Message;
      pool.pop();
      const target = endpoints.get(message.to);
      if (target === undefined || !target.alive) continue;
      for (const handler of target.frameHandlers) handler(message.from, message.bytes);
    }
    if (pool.length > 0) schedule();
    else for (const resolve of idleWaiters.splice(0)) resolve();
  }

  const kill = (id: PeerId, reason = "killed"): void => {
    const dead = endpoint(id);
    if (!dead.alive) return;
    dead.alive = false;
    for (let k = pool.length - 1; k >= 0; k--) {
      const message = pool[k] as Message;
      if (message.from === id || message.to === id) pool.splice(k, 1);
    }
    for (const [other, peer] of endpoints) {
      if (other === id || !peer.alive) continue;
      for (const handler of peer.goneHandlers) handler(id, reason);
    }
  };

  const post = (message: Message): void => {
    pool.push(message);
    schedule();
  };

  return {
    transport(id) {
      const self: Endpoint = { frameHandlers: new Set(), goneHandlers: new Set(), alive: true, silent: false, sent: 0, dieAfter: Infinity };
      endpoints.set(id, self);
      return {
        self: id,
        async send(to, bytes) {
          if (!self.alive) throw new Error(`${id} is dead`);
          const target = endpoints.get(to);
          if (target === undefined || !target.alive) throw new Error(`link ${id}->${to} is closed`);
          self.sent++;
          if (!self.silent) post({ from: id, to, bytes });
          if (self.sent >= self.dieAfter) kill(id, `died after ${self.sent} frames`);
        },
        onFrame(handler) {
          self.frameHandlers.add(handler);
          return () => self.frameHandlers.delete(handler);
        },
        onPeerGone(handler) {
          self.goneHandlers.add(handler);
          return () => self.goneHandlers.delete(handler);
        },
      };
    },
    kill,
    silence(id) {
      endpoint(id).silent = true;
    },
    killAfterFrames(id, frames) {
      const target = endpoint(id);
      target.dieAfter = frames;
      if (frames === 0) kill(id, "died before sending");
    },
    inject: (from, to, bytes) => post({ from, to, bytes }),
    flush: () => (pool.length === 0 && !scheduled ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve))),
    framesSent: (id) => endpoint(id).sent,
  };
}
