import type { Request, Response } from "express";
import { sendError } from "../http/errors.ts";

/** A status snapshot goes to every dashboard this often, changes or not (also a keep-alive). */
export const STATUS_PUSH_MS = 1_000;
/** Changes (a commit, a join, an operator action) are pushed this soon, several coalesced into one. */
export const CHANGE_PUSH_DELAY_MS = 100;
/** A serialised snapshot is reused by every connection for at most this long (unless a change came). */
const SNAPSHOT_REUSE_MS = 200;
/** Sent as `retry:`: how soon a browser's EventSource reconnects after the connection drops. */
export const RECONNECT_MS = 1_000;
/** Dashboards served at once; more are answered 503 (each one costs a snapshot a second). */
export const MAX_DASHBOARDS = 64;

/**
 * Server-sent events at /api/events: each connection gets the status at once, then every
 * STATUS_PUSH_MS and soon after each change (`notify()`). Every connection is owned by one
 * `Dashboard` that clears its timer when the connection closes; `close()` ends them all.
 * A connection that cannot keep up skips snapshots (only the newest matters) instead of buffering.
 */
export class StatusStream {
  private readonly dashboards = new Set<Dashboard>();
  private changeTimer: NodeJS.Timeout | undefined;
  private cached: { json: string; at: number } | undefined;
  private closed = false;

  constructor(
    private readonly snapshot: () => unknown,
    private readonly now: () => number = Date.now,
  ) {}

  /** Express handler for GET /api/events. */
  readonly handle = (req: Request, res: Response): void => {
    if (this.closed) return sendError(res, 503, "the server is shutting down");
    if (this.dashboards.size >= MAX_DASHBOARDS) return sendError(res, 503, `too many dashboards connected (at most ${MAX_DASHBOARDS})`);
    // Express routes HEAD to GET handlers; a HEAD response has no body, so a stream would never
    // send even its headers and would hold a dashboard slot: answer the headers alone.
    if (req.method === "HEAD") {
      res.status(200).type("text/event-stream").end();
      return;
    }
    req.socket.setTimeout(0);
    req.socket.setNoDelay(true);
    const dashboard = new Dashboard(res, () => this.json(), (gone) => this.dashboards.delete(gone));
    this.dashboards.add(dashboard);
  };

  /** Something changed: push a fresh snapshot to every dashboard shortly. */
  notify(): void {
    this.cached = undefined;
    if (this.changeTimer !== undefined || this.dashboards.size === 0 || this.closed) return;
    this.changeTimer = setTimeout(() => {
      this.changeTimer = undefined;
      for (const dashboard of this.dashboards) dashboard.send();
    }, CHANGE_PUSH_DELAY_MS);
  }

  /** Dashboards connected now. */
  get size(): number {
    return this.dashboards.size;
  }

  /** Ends every connection and clears every timer; later requests get 503. */
  close(): void {
    this.closed = true;
    clearTimeout(this.changeTimer);
    this.changeTimer = undefined;
    for (const dashboard of [...this.dashboards]) dashboard.close();
  }

  private json(): string {
    const now = this.now();
    if (this.cached === undefined || now - this.cached.at > SNAPSHOT_REUSE_MS) {
      this.cached = { json: JSON.stringify(this.snapshot()), at: now };
    }
    return this.cached.json;
  }
}

/** One dashboard's connection: owns its push timer, which it clears when the connection closes. */
class Dashboard {
  private readonly timer: NodeJS.Timeout;
  private blocked = false;
  private closed = false;

  constructor(
    private readonly res: Response,
    private readonly next: () => string,
    private readonly onClosed: (dashboard: Dashboard) => void,
  ) {
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      // Reverse proxies (nginx) would otherwise buffer the stream.
      "x-accel-buffering": "no",
    });
    res.write(`retry: ${RECONNECT_MS}\n\n`);
    res.on("close", () => this.close());
    res.on("error", () => this.close());
    res.on("drain", () => {
      this.blocked = false;
      this.send();
    });
    this.timer = setInterval(() => this.send(), STATUS_PUSH_MS);
    this.send();
  }

  send(): void {
    if (this.closed || this.blocked) return;
    // JSON.stringify never emits a raw newline, so one `data:` line carries the whole snapshot.
    if (!this.res.write(`data: ${this.next()}\n\n`)) this.blocked = true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    if (!this.res.writableEnded) this.res.end();
    this.onClosed(this);
  }
}
