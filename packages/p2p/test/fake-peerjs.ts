// A small stand-in for PeerJS in Node: just what the transport touches (Peer#connect and its
// "connection" event, DataConnection events, RTCDataChannel#send/bufferedAmount/bufferedamountlow).
// Sent messages wait "in flight" until the test delivers them (or, with autoDeliver, a timer does),
// so a test controls exactly when the far side drains the buffer.
import type { Peer } from "peerjs";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- PeerJS event handlers take different arguments per event
type Handler = (...args: any[]) => void;

class Emitter {
  private readonly handlers = new Map<string, Set<Handler>>();

  on(event: string, handler: Handler): this {
    const set = this.handlers.get(event) ?? new Set<Handler>();
    set.add(handler);
    this.handlers.set(event, set);
    return this;
  }

  once(event: string, handler: Handler): this {
    const wrapped: Handler = (...args) => {
      this.off(event, wrapped);
      handler(...args);
    };
    return this.on(event, wrapped);
  }

  off(event: string, handler: Handler): this {
    this.handlers.get(event)?.delete(handler);
    return this;
  }

  emit(event: string, ...args: unknown[]): void {
    for (const handler of [...(this.handlers.get(event) ?? [])]) handler(...args);
  }
}

export class FakeDataChannel {
  readyState: RTCDataChannelState = "connecting";
  bufferedAmount = 0;
  bufferedAmountLowThreshold = 0;
  /** Every message handed to send(), in order (copies, as the browser takes them). */
  readonly sent: Uint8Array[] = [];
  private readonly inFlight: Uint8Array[] = [];
  private readonly listeners = new Map<string, Set<() => void>>();

  constructor(
    private readonly owner: FakeConnection,
    private readonly network: FakeNetwork,
  ) {}

  send(data: Uint8Array | string): void {
    if (this.readyState !== "open") throw new Error(`InvalidStateError: data channel is ${this.readyState}`);
    const copy = typeof data === "string" ? new TextEncoder().encode(data) : data.slice();
    this.sent.push(copy);
    this.inFlight.push(copy);
    this.bufferedAmount += copy.byteLength;
    if (this.network.autoDeliver) setTimeout(() => this.deliver(), 0);
  }

  addEventListener(type: string, listener: () => void): void {
    const set = this.listeners.get(type) ?? new Set();
    set.add(listener);
    this.listeners.set(type, set);
  }

  removeEventListener(type: string, listener: () => void): void {
    this.listeners.get(type)?.delete(listener);
  }

  listenerCount(type: string): number {
    return this.listeners.get(type)?.size ?? 0;
  }

  dispatch(type: string): void {
    for (const listener of [...(this.listeners.get(type) ?? [])]) listener();
  }

  /** Hands up to `count` in-flight messages to the far side as fresh ArrayBuffers, like a browser. */
  deliver(count = Number.POSITIVE_INFINITY): void {
    for (let k = 0; k < count && this.readyState === "open"; k++) {
      const message = this.inFlight.shift();
      if (message === undefined) return;
      const before = this.bufferedAmount;
      this.bufferedAmount -= message.byteLength;
      this.owner.remote?.emit("data", message.buffer);
      if (before > this.bufferedAmountLowThreshold && this.bufferedAmount <= this.bufferedAmountLowThreshold) this.dispatch("bufferedamountlow");
    }
  }
}

export class FakeConnection extends Emitter {
  readonly dataChannel: FakeDataChannel;
  remote: FakeConnection | undefined;

  constructor(
    /** The peer at the other end, as PeerJS names it. */
    readonly peer: string,
    readonly label: string,
    readonly serialization: string,
    network: FakeNetwork,
  ) {
    super();
    this.dataChannel = new FakeDataChannel(this, network);
  }

  get open(): boolean {
    return this.dataChannel.readyState === "open";
  }

  /** Both ends open, as when ICE, DTLS and SCTP are done. */
  markOpen(): void {
    this.dataChannel.readyState = "open";
    this.emit("open");
  }

  close(): void {
    if (this.dataChannel.readyState === "closed") return;
    this.dataChannel.readyState = "closed";
    this.dataChannel.dispatch("close");
    this.emit("close");
    this.remote?.close();
  }
}

export class FakePeer extends Emitter {
  /** Every connection this peer dialled or accepted. */
  readonly connections: FakeConnection[] = [];

  constructor(
    readonly id: string,
    private readonly network: FakeNetwork,
  ) {
    super();
  }

  connect(to: string, options: { label?: string; serialization?: string } = {}): FakeConnection {
    const label = options.label ?? "";
    const serialization = options.serialization ?? "binary";
    const local = new FakeConnection(to, label, serialization, this.network);
    this.connections.push(local);
    const target = this.network.peers.get(to);
    if (target === undefined) return local; // never opens: the dialler's timeout must say so
    const remote = new FakeConnection(this.id, label, serialization, this.network);
    target.connections.push(remote);
    local.remote = remote;
    remote.remote = local;
    setTimeout(() => {
      target.emit("connection", remote);
      remote.markOpen();
      local.markOpen();
    }, 0);
    return local;
  }

  /** This peer's connection with `peer` (the first, if both dialled). */
  connectionWith(peer: string): FakeConnection {
    const found = this.connections.find((c) => c.peer === peer);
    if (found === undefined) throw new Error(`${this.id} has no connection with ${peer}`);
    return found;
  }

  asPeer(): Peer {
    return this as unknown as Peer;
  }
}

export class FakeNetwork {
  readonly peers = new Map<string, FakePeer>();

  /** Deliver every message on a timer as soon as it is sent (the far side never falls behind). */
  constructor(readonly autoDeliver = false) {}

  peer(id: string): FakePeer {
    const peer = new FakePeer(id, this);
    this.peers.set(id, peer);
    return peer;
  }
}

/** Lets pending timers (dials opening) and promise callbacks run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
