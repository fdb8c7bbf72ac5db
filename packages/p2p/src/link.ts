import type { DataConnection } from "peerjs";
import type { PeerTransportOptions } from "./options.ts";
import { ChannelSendQueues } from "./send-queues.ts";
import { CHANNEL_HEADER_BYTES, CHANNEL_NAMES, type ChannelName } from "./wire.ts";

/** Whole-link counters: wire messages and wire bytes (channel headers included). */
export type LinkStats = { framesSent: number; bytesSent: number; framesReceived: number; bytesReceived: number; framesRefused: number };

/** One channel's counters on one link: frames and payload bytes, and what waits to be sent. */
export type ChannelStats = { framesSent: number; bytesSent: number; framesReceived: number; bytesReceived: number; queuedFrames: number; queuedBytes: number };

type DrainOutcome = "drained" | "closed" | "interrupted" | "timed-out";

/**
 * One PeerJS data connection used as a frame pipe shared by every logical channel. Messages go
 * straight to the RTCDataChannel (PeerJS's own send path polls every 50 ms when its buffer fills;
 * we wait on `bufferedamountlow` instead). While the data channel holds more than
 * highWaterMarkBytes, sends wait in per-channel queues (send-queues.ts) that one pump serves in
 * turn, so one channel's backlog does not hold up another's frames.
 */
export class Link {
  readonly stats: LinkStats = { framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0, framesRefused: 0 };
  private readonly channelCounters = new Map<ChannelName, { framesSent: number; bytesSent: number; framesReceived: number; bytesReceived: number }>(
    CHANNEL_NAMES.map((name) => [name, { framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0 }]),
  );
  private readonly queues: ChannelSendQueues;
  private pumping = false;
  /** Ends the pump's wait for the data channel to drain (the link was closed meanwhile). */
  private interruptDrain: (() => void) | undefined;
  private closedReason: string | undefined;

  constructor(
    readonly connection: DataConnection,
    private readonly options: PeerTransportOptions,
  ) {
    this.queues = new ChannelSendQueues(options.maxQueuedBytesPerChannel);
  }

  get peer(): string {
    return this.connection.peer;
  }

  get isOpen(): boolean {
    return this.closedReason === undefined && this.connection.open && this.connection.dataChannel?.readyState === "open";
  }

  /** Returns false if the link was already closed, so closing is idempotent. Fails every waiting send. */
  markClosed(reason: string): boolean {
    if (this.closedReason !== undefined) return false;
    this.closedReason = reason;
    this.queues.rejectAll(new Error(`link to ${this.peer} is closed: ${reason}`));
    this.interruptDrain?.();
    return true;
  }

  /**
   * Sends one encoded message (wire.ts) of `channel`. Resolves once the data channel has taken it;
   * rejects if the link closes first, the data channel does not drain within drainTimeoutMs, or
   * the channel's queue is full (ChannelQueueFullError).
   */
  send(channel: ChannelName, message: Uint8Array<ArrayBuffer>): Promise<void> {
    if (this.closedReason !== undefined) return Promise.reject(new Error(`link to ${this.peer} is closed: ${this.closedReason}`));
    return new Promise<void>((resolve, reject) => {
      this.queues.enqueue({ channel, message, resolve, reject }); // a full queue throws: the promise rejects
      this.startPump();
    });
  }

  countReceived(channel: ChannelName | undefined, messageBytes: number): void {
    this.stats.framesReceived++;
    this.stats.bytesReceived += messageBytes;
    if (channel === undefined) {
      this.stats.framesRefused++;
      return;
    }
    const counters = this.counters(channel);
    counters.framesReceived++;
    counters.bytesReceived += messageBytes - CHANNEL_HEADER_BYTES;
  }

  channelStats(channel: ChannelName): ChannelStats {
    const { frames, bytes } = this.queues.queued(channel);
    return { ...this.counters(channel), queuedFrames: frames, queuedBytes: bytes };
  }

  private startPump(): void {
    if (this.pumping) return;
    this.pumping = true;
    // pump() settles its callers itself; a throw here is a bug, and every waiting send hears of it.
    this.pump().catch((error: unknown) => this.queues.rejectAll(error instanceof Error ? error : new Error(String(error))));
  }

  /**
   * Hands queued messages to the data channel, a channel at a time in turn, while it holds at most
   * highWaterMarkBytes. `pumping` is cleared in the same synchronous step that finds the queues
   * empty, so a send queued after that starts a new pump.
   */
  private async pump(): Promise<void> {
    try {
      while (!this.queues.isEmpty) {
        if (this.closedReason !== undefined) return; // markClosed already failed the queued sends
        const dataChannel = this.connection.dataChannel;
        if (dataChannel.readyState !== "open") {
          this.queues.rejectAll(new Error(`link to ${this.peer} is ${dataChannel.readyState}`));
          return;
        }
        if (dataChannel.bufferedAmount > this.options.highWaterMarkBytes) {
          const outcome = await this.drained(dataChannel);
          // The far side has taken nothing for drainTimeoutMs: every frame waiting here would wait as long.
          if (outcome === "timed-out") this.queues.rejectAll(new Error(`link to ${this.peer} did not drain within drainTimeoutMs=${this.options.drainTimeoutMs}`));
          continue; // "closed" and "interrupted" are handled by the checks at the top
        }
        const item = this.queues.next();
        if (item === undefined) return;
        try {
          dataChannel.send(item.message);
        } catch (error) {
          item.reject(new Error(`send to ${this.peer} failed: ${String(error)}`));
          continue;
        }
        this.stats.framesSent++;
        this.stats.bytesSent += item.message.byteLength;
        const counters = this.counters(item.channel);
        counters.framesSent++;
        counters.bytesSent += item.message.byteLength - CHANNEL_HEADER_BYTES;
        item.resolve();
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Waits for `bufferedamountlow`, the data channel closing, markClosed, or drainTimeoutMs. */
  private drained(dataChannel: RTCDataChannel): Promise<DrainOutcome> {
    return new Promise<DrainOutcome>((resolve) => {
      const finish = (outcome: DrainOutcome): void => {
        clearTimeout(timer);
        dataChannel.removeEventListener("bufferedamountlow", onLow);
        dataChannel.removeEventListener("close", onClose);
        this.interruptDrain = undefined;
        resolve(outcome);
      };
      const onLow = (): void => finish("drained");
      const onClose = (): void => finish("closed");
      const timer = setTimeout(() => finish("timed-out"), this.options.drainTimeoutMs);
      this.interruptDrain = () => finish("interrupted");
      dataChannel.bufferedAmountLowThreshold = this.options.lowWaterMarkBytes;
      dataChannel.addEventListener("bufferedamountlow", onLow);
      dataChannel.addEventListener("close", onClose);
    });
  }

  private counters(channel: ChannelName): { framesSent: number; bytesSent: number; framesReceived: number; bytesReceived: number } {
    const counters = this.channelCounters.get(channel);
    if (counters === undefined) throw new RangeError(`unknown channel ${String(channel)}`);
    return counters;
  }
}
