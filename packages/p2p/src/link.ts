import type { DataConnection } from "peerjs";
import type { PeerTransportOptions } from "./options.ts";

export type LinkStats = { framesSent: number; bytesSent: number; framesReceived: number; bytesReceived: number };

/**
 * One PeerJS data connection used as a frame pipe. Frames go straight to the RTCDataChannel as
 * binary messages (PeerJS's own send path polls every 50 ms when its buffer fills; we wait on
 * `bufferedamountlow` instead). Sends are chained so frames leave in the order they were given.
 */
export class Link {
  readonly stats: LinkStats = { framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 };
  private tail: Promise<void> = Promise.resolve();
  private closedReason: string | undefined;

  constructor(
    readonly connection: DataConnection,
    private readonly options: PeerTransportOptions,
  ) {}

  get peer(): string {
    return this.connection.peer;
  }

  get isOpen(): boolean {
    return this.closedReason === undefined && this.connection.open && this.connection.dataChannel?.readyState === "open";
  }

  /** Returns false if the link was already closed, so closing is idempotent. */
  markClosed(reason: string): boolean {
    if (this.closedReason !== undefined) return false;
    this.closedReason = reason;
    return true;
  }

  send(frame: Uint8Array<ArrayBuffer>): Promise<void> {
    const next = this.tail.then(() => this.sendNow(frame));
    // The chain must survive a failed send so later sends report their own failure, not this one's.
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async sendNow(frame: Uint8Array<ArrayBuffer>): Promise<void> {
    if (this.closedReason !== undefined) throw new Error(`link to ${this.peer} is closed: ${this.closedReason}`);
    const channel = this.connection.dataChannel;
    if (channel.bufferedAmount > this.options.highWaterMarkBytes) await this.drained(channel);
    if (channel.readyState !== "open") throw new Error(`link to ${this.peer} is ${channel.readyState}`);
    channel.send(frame);
    this.stats.framesSent++;
    this.stats.bytesSent += frame.byteLength;
  }

  private drained(channel: RTCDataChannel): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        clearTimeout(timer);
        channel.removeEventListener("bufferedamountlow", onLow);
        channel.removeEventListener("close", onClose);
      };
      const onLow = (): void => {
        cleanup();
        resolve();
      };
      const onClose = (): void => {
        cleanup();
        reject(new Error(`link to ${this.peer} closed while waiting to send`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`link to ${this.peer} did not drain within drainTimeoutMs=${this.options.drainTimeoutMs}`));
      }, this.options.drainTimeoutMs);
      channel.bufferedAmountLowThreshold = this.options.lowWaterMarkBytes;
      channel.addEventListener("bufferedamountlow", onLow);
      channel.addEventListener("close", onClose);
    });
  }
}
