import { EventEmitter } from "node:events";
import type WebSocket from "ws";
import { CLOSE_POLICY_VIOLATION, closeReason } from "../close-reason.ts";
import { inspectPeerMessage } from "./peer-messages.ts";
import { createTokenBucket, type TokenBucket } from "./token-bucket.ts";

/**
 * How much one signalling socket may send, and how long a close may take.
 *
 * A PeerJS client sends a HEARTBEAT every 5 s, and per data connection one OFFER or ANSWER (an SDP
 * of 1-5 KiB) and a dozen CANDIDATEs of ~300 bytes; a worker opens a few connections (its ring
 * neighbours), and after a reshuffle perhaps a few dozen at once. The limits are ~100x that, so no
 * honest client meets them, while what one socket can make the server hold stays bounded: `peer`
 * queues messages for an issued id that is not connected yet for up to PEER_QUEUE_EXPIRE_MS plus
 * one sweep (6 s), so one socket can park at most byteBurst + bytesPerSecond x 6 s = 5 MiB there.
 */
export type SignallingLimits = {
  /** Sustained messages per second, each frame counted (dropped ones too). */
  messagesPerSecond: number;
  /** Messages a socket may send at once after a quiet spell. */
  messageBurst: number;
  /** Sustained bytes per second of inbound frames. */
  bytesPerSecond: number;
  /** Bytes a socket may send at once; at least the largest frame (PEER_MAX_MESSAGE_BYTES). */
  byteBurst: number;
  /** Outbound bytes queued for a socket beyond which its client is not reading: it is closed, not buffered for. */
  maxBufferedBytes: number;
  /** How long a closing socket may take to answer our close frame before it is terminated. */
  closeTimeoutMs: number;
};

/** 200 messages/s sustained, bursts of 400: see SignallingLimits. */
export const SIGNAL_MESSAGES_PER_S = 200;
export const SIGNAL_MESSAGE_BURST = 400;
/** 512 KiB/s sustained, bursts of 2 MiB (32 maximal frames): see SignallingLimits. */
export const SIGNAL_BYTES_PER_S = 512 * 1024;
export const SIGNAL_BYTE_BURST = 2 * 1024 * 1024;
/** 4 MiB unsent to one client: other senders are rate-limited, so only a client that stopped reading gets here. */
export const SIGNAL_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** A live client answers a close frame within a round trip; 2 s leaves room for a loaded machine. */
export const SIGNAL_CLOSE_TIMEOUT_MS = 2_000;
/** Longest reason in a log line: a refusal quotes what the client sent, which it controls. */
const LOG_REASON_MAX_CHARS = 200;

export const DEFAULT_SIGNALLING_LIMITS: Readonly<SignallingLimits> = {
  messagesPerSecond: SIGNAL_MESSAGES_PER_S,
  messageBurst: SIGNAL_MESSAGE_BURST,
  bytesPerSecond: SIGNAL_BYTES_PER_S,
  byteBurst: SIGNAL_BYTE_BURST,
  maxBufferedBytes: SIGNAL_MAX_BUFFERED_BYTES,
  closeTimeoutMs: SIGNAL_CLOSE_TIMEOUT_MS,
};

export type FilteredSocketOptions = {
  /** The id the socket registered as (checked against the registry at the handshake). */
  peerId: string;
  limits: SignallingLimits;
  /** Whether a destination id is live; a message to any other id is dropped. */
  isIssued: (peerId: string) => boolean;
  /** Monotonic clock in milliseconds, for the rate limits. */
  now: () => number;
  /** One line per refused socket, and for socket errors nobody else listens to. */
  onLog: (text: string) => void;
};

/**
 * What `peer` gets instead of the real WebSocket: the subset of `ws` it uses (on/once/off/emit of
 * 'message', 'close', 'error'; send; close; terminate; readyState), forwarding to the real socket,
 * except that inbound messages reach `peer` only once they are known to be a PeerJS client message
 * for an issued id, within the socket's rate. A socket that sends anything else is closed with 1008
 * and one log line, and nothing more it sends reaches `peer`.
 *
 * Owns: the real socket's listeners (they go with it) and the close timer (cleared when the socket
 * closes, or by dispose()).
 */
export class FilteredSocket extends EventEmitter {
  private readonly messages: TokenBucket;
  private readonly bytes: TokenBucket;
  /** Set once a close has begun: from then on nothing inbound reaches `peer`. */
  private closing = false;
  /** `peer` hears 'close' once: early from shut(), or when the real socket closes. */
  private closeEmitted = false;
  private closeTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly options: FilteredSocketOptions,
  ) {
    super();
    const { limits } = options;
    const start = options.now();
    this.messages = createTokenBucket(limits.messagesPerSecond, limits.messageBurst, start);
    this.bytes = createTokenBucket(limits.bytesPerSecond, limits.byteBurst, start);
    ws.on("message", (data, isBinary) => this.onMessage(data, isBinary));
    ws.on("close", (code: number, reason: Buffer) => {
      this.closing = true;
      this.dispose();
      this.emitCloseOnce(code, reason);
    });
    ws.on("error", (error: Error) => {
      // `peer` listens and re-emits it on its app, where mountPeerServer logs it; without a listener
      // an 'error' emit would throw, so say it here instead.
      if (this.listenerCount("error") > 0) this.emit("error", error);
      else options.onLog(`peerjs ${options.peerId}: socket error: ${error.message}`);
    });
  }

  get peerId(): string {
    return this.options.peerId;
  }

  get readyState(): number {
    return this.ws.readyState;
  }

  /** What `peer` sends to this client (OPEN, ERROR, relayed messages). */
  send(data: string, callback?: (error?: Error) => void): void {
    const { maxBufferedBytes } = this.options.limits;
    if (this.ws.bufferedAmount + Buffer.byteLength(data) > maxBufferedBytes) {
      this.refuse(`more than ${maxBufferedBytes} bytes unread: the client does not read its signalling messages`);
      return;
    }
    this.ws.send(data, callback);
  }

  /** Starts the closing handshake; a client that does not answer within closeTimeoutMs is terminated. */
  close(code?: number, reason?: string): void {
    this.closing = true;
    if (this.closeTimer === undefined && this.ws.readyState !== this.ws.CLOSED) {
      this.closeTimer = setTimeout(() => this.ws.terminate(), this.options.limits.closeTimeoutMs);
    }
    this.ws.close(code, reason === undefined ? undefined : closeReason(reason));
  }

  terminate(): void {
    this.closing = true;
    this.ws.terminate();
  }

  /**
   * Our own close (revoked, replaced, refused): starts the closing handshake and tells `peer` at once
   * that the socket is gone, so it forgets the id now rather than after the client's answer. A
   * reconnecting client's new socket then registers afresh and gets its OPEN.
   */
  shut(code: number, reason: string): void {
    this.close(code, reason);
    this.emitCloseOnce(code, Buffer.from(closeReason(reason)));
  }

  /** Closes the socket for breaking the signalling rules: code 1008, a short reason, one log line. */
  refuse(reason: string): void {
    if (this.closing) return;
    const flat = reason.replace(/[\r\n]+/g, " ");
    const logged = flat.length > LOG_REASON_MAX_CHARS ? `${flat.slice(0, LOG_REASON_MAX_CHARS)}...` : flat;
    this.options.onLog(`peerjs ${this.options.peerId}: closed (${CLOSE_POLICY_VIOLATION}): ${logged}`);
    this.shut(CLOSE_POLICY_VIOLATION, flat);
  }

  /** Frees the close timer; the socket itself is owned by the WebSocketServer that accepted it. */
  dispose(): void {
    clearTimeout(this.closeTimer);
    this.closeTimer = undefined;
  }

  private emitCloseOnce(code: number, reason: Buffer): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.emit("close", code, reason);
  }

  private onMessage(data: WebSocket.RawData, isBinary: boolean): void {
    // Frames already received when a close began are not the client's last word to `peer`.
    if (this.closing) return;
    const { limits, now, isIssued } = this.options;
    const at = now();
    // Every frame costs, even one that is dropped: the limits bound work, not only delivery.
    if (!this.messages.take(1, at)) {
      return this.refuse(`more than ${limits.messagesPerSecond} messages/s (burst ${limits.messageBurst})`);
    }
    if (!this.bytes.take(rawLength(data), at)) {
      return this.refuse(`more than ${limits.bytesPerSecond} bytes/s (burst ${limits.byteBurst})`);
    }
    if (isBinary) return this.refuse("binary frame: PeerJS messages are JSON text");
    // ws has checked that a text frame is valid UTF-8.
    const text = rawText(data);
    const inspection = inspectPeerMessage(text, isIssued);
    switch (inspection.kind) {
      case "refuse":
        return this.refuse(inspection.reason);
      case "drop":
        // Not logged: a destination that just left is an everyday race, and a flood of them would
        // be a flood of log lines; the rate limits bound what a hostile sender can do with it.
        return;
      case "deliver":
        // The text `peer` will JSON.parse is the one that parsed here; it sets `src` itself.
        this.emit("message", text);
        return;
    }
  }
}

function rawLength(data: WebSocket.RawData): number {
  if (Array.isArray(data)) return data.reduce((sum, chunk) => sum + chunk.length, 0);
  return data.byteLength;
}

function rawText(data: WebSocket.RawData): string {
  if (Array.isArray(data)) return Buffer.concat(data).toString("utf8");
  if (data instanceof ArrayBuffer) return Buffer.from(data).toString("utf8");
  return data.toString("utf8");
}
