// The live status from the server's server-sent events (/api/events), parsed with the protocol's
// StatusSchema. EventSource reconnects by itself after a dropped connection (the server sends
// `retry:`); this feed also reopens one that the browser gave up on, and one that went silent.
import { parseStatus, type Status } from "@crowdtrain/protocol";

/** The server pushes a snapshot every second; this long without one means the connection is dead. */
export const STALE_AFTER_MS = 5_000;
/** How often the feed checks for silence. */
const WATCHDOG_MS = 1_000;
/** Before reopening an EventSource that the browser closed for good. */
export const REOPEN_AFTER_MS = 2_000;

export type Connection = "connecting" | "live" | "reconnecting";

export type FeedState = {
  status: Status | undefined;
  connection: Connection;
  /** A snapshot that did not parse: the server and the dashboard disagree on the status shape. */
  problem: string | undefined;
  /** When the last snapshot arrived (this browser's clock). */
  receivedAt: number | undefined;
};

export const INITIAL_FEED: FeedState = { status: undefined, connection: "connecting", problem: undefined, receivedAt: undefined };

/** Owns one EventSource at a time and its timers; `close()` stops everything. */
export class StatusFeed {
  private source: EventSource | undefined;
  private reopenTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly watchdog: ReturnType<typeof setInterval>;
  private state: FeedState = INITIAL_FEED;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly onChange: (state: FeedState) => void,
  ) {
    this.open();
    this.watchdog = setInterval(() => this.checkSilence(), WATCHDOG_MS);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.watchdog);
    clearTimeout(this.reopenTimer);
    this.source?.close();
    this.source = undefined;
  }

  private open(): void {
    if (this.closed) return;
    const source = new EventSource(this.url);
    this.source = source;
    source.onmessage = (event: MessageEvent<string>) => this.receive(event.data);
    source.onerror = () => {
      if (this.source !== source) return;
      this.update({ connection: this.state.status === undefined && this.state.connection === "connecting" ? "connecting" : "reconnecting" });
      // CONNECTING: the browser retries by itself. CLOSED: it gave up (an answer that was not a stream).
      if (source.readyState === EventSource.CLOSED) this.reopenSoon();
    };
  }

  private receive(data: string): void {
    let status: Status;
    try {
      status = parseStatus(JSON.parse(data));
    } catch (error) {
      this.update({ connection: "live", problem: error instanceof Error ? error.message : String(error), receivedAt: Date.now() });
      return;
    }
    this.update({ status, connection: "live", problem: undefined, receivedAt: Date.now() });
  }

  private checkSilence(): void {
    const last = this.state.receivedAt;
    if (this.state.connection !== "live" || last === undefined || Date.now() - last < STALE_AFTER_MS) return;
    this.update({ connection: "reconnecting" });
    this.reopenSoon(0);
  }

  private reopenSoon(delay = REOPEN_AFTER_MS): void {
    this.source?.close();
    this.source = undefined;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = setTimeout(() => this.open(), delay);
  }

  private update(change: Partial<FeedState>): void {
    this.state = { ...this.state, ...change };
    this.onChange(this.state);
  }
}
