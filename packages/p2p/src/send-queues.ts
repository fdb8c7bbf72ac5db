import { CHANNEL_NAMES, type ChannelName } from "./wire.ts";

/** A frame waiting for room in the data channel, and the caller waiting on it. */
export type PendingSend = {
  channel: ChannelName;
  /** The encoded wire message (channel header included). */
  message: Uint8Array<ArrayBuffer>;
  resolve: () => void;
  reject: (error: Error) => void;
};

/** A send refused at once because its channel already holds too many bytes waiting on this link. */
export class ChannelQueueFullError extends Error {
  override readonly name = "ChannelQueueFullError";
  constructor(
    readonly channel: ChannelName,
    readonly queuedBytes: number,
    readonly limitBytes: number,
  ) {
    super(`the ${channel} channel already has ${queuedBytes} bytes waiting to send (maxQueuedBytesPerChannel=${limitBytes})`);
  }
}

/**
 * One link's outgoing frames while the data channel is full: a FIFO per channel, served in turn
 * one frame at a time (round robin), each channel's bytes counted against its own limit. So a
 * channel with a long backlog delays another channel's next frame by at most one of its own frames
 * (plus whatever the data channel already holds), and filling its queue refuses only its own
 * sends. Frames of one channel leave in order; frames of different channels may overtake each
 * other. Pure: the link decides when there is room.
 */
export class ChannelSendQueues {
  private readonly queues = new Map<ChannelName, PendingSend[]>(CHANNEL_NAMES.map((name) => [name, []]));
  private readonly bytes = new Map<ChannelName, number>(CHANNEL_NAMES.map((name) => [name, 0]));
  /** Index in CHANNEL_NAMES of the channel served last; the next turn starts after it. */
  private lastServed = CHANNEL_NAMES.length - 1;
  private count = 0;

  constructor(private readonly maxQueuedBytesPerChannel: number) {}

  get isEmpty(): boolean {
    return this.count === 0;
  }

  /** Frames and bytes (wire bytes, header included) waiting on `channel`. */
  queued(channel: ChannelName): { frames: number; bytes: number } {
    return { frames: this.queueOf(channel).length, bytes: this.bytes.get(channel) ?? 0 };
  }

  /** Queues `item`, or throws ChannelQueueFullError if its channel would exceed its limit. */
  enqueue(item: PendingSend): void {
    const queue = this.queueOf(item.channel);
    const queuedBytes = this.bytes.get(item.channel) ?? 0;
    if (queuedBytes + item.message.byteLength > this.maxQueuedBytesPerChannel) {
      throw new ChannelQueueFullError(item.channel, queuedBytes, this.maxQueuedBytesPerChannel);
    }
    queue.push(item);
    this.bytes.set(item.channel, queuedBytes + item.message.byteLength);
    this.count++;
  }

  /** Takes the head of the next non-empty channel after the one served last. */
  next(): PendingSend | undefined {
    for (let step = 1; step <= CHANNEL_NAMES.length; step++) {
      const index = (this.lastServed + step) % CHANNEL_NAMES.length;
      const channel = CHANNEL_NAMES[index] as ChannelName;
      const item = this.queueOf(channel).shift();
      if (item === undefined) continue;
      this.lastServed = index;
      this.bytes.set(channel, (this.bytes.get(channel) ?? 0) - item.message.byteLength);
      this.count--;
      return item;
    }
    return undefined;
  }

  /** Empties every queue, rejecting each waiting send with `error`. */
  rejectAll(error: Error): void {
    for (let item = this.next(); item !== undefined; item = this.next()) item.reject(error);
  }

  private queueOf(channel: ChannelName): PendingSend[] {
    const queue = this.queues.get(channel);
    if (queue === undefined) throw new RangeError(`unknown channel ${String(channel)}`);
    return queue;
  }
}
