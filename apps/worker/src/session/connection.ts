/**
 * The worker's line to the coordinator: a WebSocket that comes back by itself. When it drops (the
 * server restarted, the network blinked) it reconnects with capped exponential backoff and jitter,
 * so a restarted server is not hit by every tab at the same instant. Owns its socket and its timer.
 */
export const RECONNECT_MIN_MS = 250;
export const RECONNECT_MAX_MS = 5_000;

export type ConnectionEvents = {
  /** A (re)opened socket: say hello. */
  onOpen(): void;
  onMessage(data: unknown): void;
  /** The socket dropped; a reconnect is scheduled after `retryInMs`. */
  onDown(reason: string, retryInMs: number): void;
};

export interface Connection {
  send(text: string): boolean;
  /** Closes for good: no reconnect. */
  close(reason: string): void;
}

export function connect(url: string, events: ConnectionEvents, random: () => number = Math.random): Connection {
  let socket: WebSocket | undefined;
  let failures = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  const open = (): void => {
    retryTimer = undefined;
    const ws = new WebSocket(url);
    socket = ws;
    ws.addEventListener("open", () => {
      failures = 0;
      events.onOpen();
    });
    ws.addEventListener("message", (event) => events.onMessage(event.data));
    ws.addEventListener("close", (event) => {
      if (closed || socket !== ws) return;
      const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** failures) * (0.5 + random() / 2);
      failures++;
      events.onDown(`connection to the server closed (${event.code}${event.reason ? `: ${event.reason}` : ""})`, delay);
      retryTimer = setTimeout(open, delay);
    });
  };
  open();

  return {
    send(text) {
      if (socket?.readyState !== WebSocket.OPEN) return false;
      socket.send(text);
      return true;
    },
    close(reason) {
      if (closed) return;
      closed = true;
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      socket?.close(1000, reason.slice(0, 120));
    },
  };
}
