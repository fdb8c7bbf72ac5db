import type { PeerId } from "@crowdtrain/allreduce";
import { CHANNEL_NAMES, decodeChannelFrame, type ChannelName, type ChannelViolation } from "./wire.ts";

export type FrameHandler = (from: PeerId, frame: Uint8Array) => void;
export type ViolationHandler = (peer: PeerId, violation: ChannelViolation) => void;

/**
 * Routes received messages to the handlers of their channel, and refused ones to the violation
 * handlers (naming the sender) and nowhere else. Pure: the transport feeds it what links receive.
 */
export class ChannelDemux {
  private readonly frameHandlers = new Map<ChannelName, Set<FrameHandler>>(CHANNEL_NAMES.map((name) => [name, new Set()]));
  private readonly violationHandlers = new Set<ViolationHandler>();

  onFrame(channel: ChannelName, handler: FrameHandler): () => void {
    const handlers = this.handlersOf(channel);
    handlers.add(handler);
    return () => handlers.delete(handler);
  }

  onViolation(handler: ViolationHandler): () => void {
    this.violationHandlers.add(handler);
    return () => this.violationHandlers.delete(handler);
  }

  /**
   * Delivers one message from `from`. Handlers get a view into `message`, valid for their call
   * only. Returns the channel it went to and the payload size, or undefined if it was refused.
   */
  deliver(from: PeerId, message: ArrayBuffer | Uint8Array): { channel: ChannelName; payloadBytes: number } | undefined {
    const decoded = decodeChannelFrame(message);
    if (!decoded.ok) {
      this.reportViolation(from, decoded.violation);
      return undefined;
    }
    for (const handler of this.handlersOf(decoded.channel)) handler(from, decoded.payload);
    return { channel: decoded.channel, payloadBytes: decoded.payload.byteLength };
  }

  /** Also used by the transport for what never reaches the decoder (a text message). */
  reportViolation(from: PeerId, violation: ChannelViolation): void {
    for (const handler of this.violationHandlers) handler(from, violation);
  }

  private handlersOf(channel: ChannelName): Set<FrameHandler> {
    const handlers = this.frameHandlers.get(channel);
    if (handlers === undefined) throw new RangeError(`unknown channel ${String(channel)}`);
    return handlers;
  }
}
