/**
 * Which serving tab answers which inference request: a pure state machine (no I/O, no clock; time
 * comes in on the calls), driven by the server's serving pool.
 *
 * Invariants:
 * - **Answered once.** A request is answered by the first reply from a tab holding it; the request
 *   is then forgotten everywhere, so a second reply (a hedged copy, a tab that answers after it was
 *   given up on) is recognised as late and dropped.
 * - **Never lost.** A request held by a tab that leaves or fails it, or stays silent past the attempt
 *   timeout (then only for an idle tab), goes back to the front of the queue (keeping its place ahead of newer requests) until
 *   its deadline; past the deadline `expire` hands it back to be answered 504.
 * - **Bounded.** Unanswered requests hold at most `maxPendingRows` rows in all (more is refused:
 *   503), so memory does not grow with the load; a tab holds at most `outstandingBatches` of its
 *   batches at once, so a slow tab cannot hoard the queue.
 */

export type ServeRequest = { id: number; rows: number; arrivedAt: number; deadline: number };

export type DispatcherConfig = {
  /** Rows of unanswered requests (queued or held by tabs) at most; a request past this is refused (503 with Retry-After). */
  maxPendingRows: number;
  /** Batches a tab may hold at once: one computing, one filling beside it. */
  outstandingBatches: number;
  /** A request held this long by one tab is also offered to another (the first answer wins). */
  attemptTimeoutMs: number;
};

export const DEFAULT_DISPATCHER_CONFIG: DispatcherConfig = { maxPendingRows: 32_768, outstandingBatches: 2, attemptTimeoutMs: 2_000 };

/**
 * Requests a tab was given up on (answered by another, expired) whose late reply is still expected:
 * dropped quietly when it comes, not taken for a protocol violation. The oldest are forgotten first.
 */
const MAX_LATE_PER_TAB = 4_096;
/** Capacity is measured over this much of a tab's busy time before it counts. */
const MIN_MEASURED_BUSY_MS = 200;
/** A capacity below this counts as this when tabs are compared (never a division by zero). */
const MIN_CAPACITY_RPS = 1e-3;
/** Weight of the newest measurement in a tab's capacity (exponential average). */
const CAPACITY_SMOOTHING = 0.3;

export type TabView = {
  id: string;
  round: number | undefined;
  outstanding: number;
  capacityRps: number | undefined;
  /** The latest measure alone (the average lags a tab that warmed up or sped up). */
  lastCapacityRps: number | undefined;
  dedicated: boolean;
  draining: boolean;
};

type Held = { rows: number; sentAt: number };

class Tab {
  round: number | undefined;
  draining = false;
  readonly held = new Map<number, Held>();
  heldRows = 0;
  /** Rows of requests it was given up on, by id: its reply to one is late, not forged. */
  readonly late = new Map<number, number>();
  /** Since when it holds work (undefined: idle); busy time and rows answered since the last measure. */
  busySince: number | undefined;
  busyMs = 0;
  rowsDone = 0;
  capacityRps: number | undefined;
  lastCapacityRps: number | undefined;

  constructor(
    readonly id: string,
    readonly maxBatch: number,
    readonly dedicated: boolean,
  ) {}

  get serving(): boolean {
    return this.round !== undefined && !this.draining;
  }

  hold(id: number, rows: number, now: number): void {
    if (this.held.size === 0) this.busySince = now;
    this.held.set(id, { rows, sentAt: now });
    this.heldRows += rows;
  }

  release(id: number, now: number, answered: boolean): void {
    const held = this.held.get(id);
    if (held === undefined) return;
    this.held.delete(id);
    this.heldRows -= held.rows;
    if (answered) this.rowsDone += held.rows;
    else {
      this.late.set(id, held.rows);
      if (this.late.size > MAX_LATE_PER_TAB) this.late.delete(this.late.keys().next().value as number);
    }
    if (this.held.size === 0 && this.busySince !== undefined) {
      this.busyMs += now - this.busySince;
      this.busySince = undefined;
    }
  }

  /** Folds the busy time and rows since the last call into the capacity estimate. */
  measure(now: number): void {
    const busy = this.busyMs + (this.busySince === undefined ? 0 : now - this.busySince);
    // Nothing answered yet (a first predict compiling its shaders): no rate to fold in. Rating it 0
    // would keep every request from it for good; its busy time counts at the first answer instead.
    if (busy < MIN_MEASURED_BUSY_MS || this.rowsDone === 0) return;
    const rate = this.rowsDone / (busy / 1000);
    this.lastCapacityRps = rate;
    this.capacityRps = this.capacityRps === undefined ? rate : (1 - CAPACITY_SMOOTHING) * this.capacityRps + CAPACITY_SMOOTHING * rate;
    this.busyMs = 0;
    this.rowsDone = 0;
    if (this.busySince !== undefined) this.busySince = now;
  }
}

export type Submitted = "queued" | "full";

export class Dispatcher {
  private readonly config: DispatcherConfig;
  private readonly tabs = new Map<string, Tab>();
  /** Each unanswered request, the tabs holding it, and the tabs that failed it (never offered it again). */
  private readonly requests = new Map<number, { request: ServeRequest; holders: Set<string>; failedBy?: Set<string> }>();
  /** Request ids waiting for a tab, oldest first (a retried one goes back to the front); each at most once. */
  private queue: number[] = [];
  private readonly inQueue = new Set<number>();
  private pendingRows = 0;

  constructor(config: Partial<DispatcherConfig> = {}) {
    this.config = { ...DEFAULT_DISPATCHER_CONFIG, ...config };
    const { maxPendingRows, outstandingBatches, attemptTimeoutMs } = this.config;
    if (!(Number.isInteger(maxPendingRows) && maxPendingRows >= 1)) throw new RangeError(`maxPendingRows must be a positive integer, got ${maxPendingRows}`);
    if (!(Number.isInteger(outstandingBatches) && outstandingBatches >= 1)) throw new RangeError(`outstandingBatches must be a positive integer, got ${outstandingBatches}`);
    if (!(attemptTimeoutMs > 0)) throw new RangeError(`attemptTimeoutMs must be positive, got ${attemptTimeoutMs}`);
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Requests not yet answered (queued or held by a tab). */
  get pending(): number {
    return this.requests.size;
  }

  /** Rows of the requests not yet answered. */
  get rowsPending(): number {
    return this.pendingRows;
  }

  /** Tabs taking requests now (loaded, not draining). */
  get serving(): number {
    let count = 0;
    for (const tab of this.tabs.values()) if (tab.serving) count++;
    return count;
  }

  addTab(id: string, maxBatch: number, dedicated: boolean): void {
    if (this.tabs.has(id)) throw new RangeError(`serving tab ${id} added twice`);
    this.tabs.set(id, new Tab(id, maxBatch, dedicated));
  }

  hasTab(id: string): boolean {
    return this.tabs.has(id);
  }

  /** The tab holds the weights of `round` and takes requests. */
  loaded(id: string, round: number): void {
    const tab = this.tabs.get(id);
    if (tab !== undefined) tab.round = round;
  }

  /** The tab takes no new requests (it goes back to training); what it holds it may still answer. */
  drain(id: string): void {
    const tab = this.tabs.get(id);
    if (tab !== undefined) tab.draining = true;
  }

  /** The tab is gone: whatever it alone held goes back to the front of the queue. */
  removeTab(id: string, now: number): void {
    const tab = this.tabs.get(id);
    if (tab === undefined) return;
    this.tabs.delete(id);
    const requeue: number[] = [];
    for (const requestId of tab.held.keys()) {
      const entry = this.requests.get(requestId);
      if (entry === undefined) continue;
      entry.holders.delete(id);
      if (entry.holders.size === 0) requeue.push(requestId);
    }
    tab.held.clear();
    this.requeueFront(requeue, now);
  }

  submit(request: ServeRequest): Submitted {
    if (this.requests.has(request.id)) throw new RangeError(`request ${request.id} submitted twice`);
    if (this.pendingRows + request.rows > this.config.maxPendingRows) return "full";
    this.pendingRows += request.rows;
    this.requests.set(request.id, { request, holders: new Set() });
    this.queue.push(request.id);
    this.inQueue.add(request.id);
    return "queued";
  }

  /**
   * Hands queued requests to tabs with room, oldest first, each to the tab with the fewest rows
   * held for its capacity; also offers a request held too long by one tab to another. Returns what
   * to send where.
   */
  assign(now: number): { tab: string; request: ServeRequest }[] {
    this.hedgeStale(now);
    // Overloaded, every tab is full: the queue is not walked for nothing (it is long then).
    if (this.queue.length === 0 || !this.anyRoom()) return [];
    const out: { tab: string; request: ServeRequest }[] = [];
    const waiting: number[] = [];
    /** No tab has room: the rest of the queue waits (a hedged or failed request skips only its own tabs). */
    let full = false;
    for (const id of this.queue) {
      const entry = this.requests.get(id);
      if (entry === undefined) continue;
      const tab = full ? undefined : this.leastLoaded(entry, entry.request.rows);
      if (tab === undefined) {
        waiting.push(id);
        // Excluding no tab, it found none with room: nothing behind it fits either.
        if (entry.holders.size === 0 && (entry.failedBy?.size ?? 0) === 0) full = true;
        continue;
      }
      tab.hold(id, entry.request.rows, now);
      entry.holders.add(tab.id);
      out.push({ tab: tab.id, request: entry.request });
    }
    this.setQueue(waiting);
    return out;
  }

  /** A tab answered: the request if this is its first answer, else undefined (late: drop it). */
  reply(tabId: string, requestId: number, now: number): ServeRequest | undefined {
    const tab = this.tabs.get(tabId);
    if (tab === undefined) return undefined;
    if (tab.late.delete(requestId) || !tab.held.has(requestId)) return undefined;
    tab.release(requestId, now, true);
    const entry = this.requests.get(requestId);
    if (entry === undefined) return undefined;
    this.forget(requestId, entry.holders, tabId, now);
    return entry.request;
  }

  /** Rows a tab holds for `requestId` (undefined: not held there). */
  rowsHeld(tabId: string, requestId: number): number | undefined {
    return this.tabs.get(tabId)?.held.get(requestId)?.rows;
  }

  /**
   * Rows of `requestId` as sent to this tab, held or given up on (undefined: never sent there, so a
   * reply to it is forged): what its reply must carry.
   */
  rowsSent(tabId: string, requestId: number): number | undefined {
    const tab = this.tabs.get(tabId);
    return tab?.held.get(requestId)?.rows ?? tab?.late.get(requestId);
  }

  /** A tab could not answer: the request goes back to the queue unless another tab holds it. */
  failed(tabId: string, requestId: number, now: number): void {
    const tab = this.tabs.get(tabId);
    if (tab === undefined) return;
    if (tab.late.delete(requestId) || !tab.held.has(requestId)) return;
    tab.release(requestId, now, false);
    // It said it cannot answer: no reply of it is expected any more.
    tab.late.delete(requestId);
    const entry = this.requests.get(requestId);
    if (entry === undefined) return;
    entry.holders.delete(tabId);
    (entry.failedBy ??= new Set()).add(tabId);
    if (entry.holders.size === 0) this.requeueFront([requestId], now);
  }

  /** Requests past their deadline, removed (the caller answers them 504); a tab's later answer is dropped. */
  expire(now: number): ServeRequest[] {
    const expired: ServeRequest[] = [];
    for (const [id, entry] of this.requests) {
      if (entry.request.deadline > now) continue;
      expired.push(entry.request);
      this.forget(id, entry.holders, undefined, now);
    }
    if (expired.length > 0) this.setQueue(this.queue.filter((id) => this.requests.has(id)));
    return expired;
  }

  /** Removes every request (the server stops): the caller answers them. */
  drainAll(): ServeRequest[] {
    const all = [...this.requests.values()].map((entry) => entry.request);
    this.requests.clear();
    this.setQueue([]);
    this.pendingRows = 0;
    for (const tab of this.tabs.values()) {
      tab.held.clear();
      tab.heldRows = 0;
    }
    return all;
  }

  /** Updates each tab's capacity from its busy time since the last call; the mean over measured tabs. */
  measure(now: number): number | undefined {
    let sum = 0;
    let measured = 0;
    for (const tab of this.tabs.values()) {
      tab.measure(now);
      if (tab.capacityRps === undefined || !tab.serving) continue;
      sum += tab.capacityRps;
      measured++;
    }
    return measured === 0 ? undefined : sum / measured;
  }

  views(): TabView[] {
    return [...this.tabs.values()].map((tab) => ({
      id: tab.id,
      round: tab.round,
      outstanding: tab.held.size,
      capacityRps: tab.capacityRps,
      lastCapacityRps: tab.lastCapacityRps,
      dedicated: tab.dedicated,
      draining: tab.draining,
    }));
  }

  private anyRoom(): boolean {
    for (const tab of this.tabs.values()) {
      if (tab.serving && (tab.heldRows === 0 || tab.heldRows < tab.maxBatch * this.config.outstandingBatches)) return true;
    }
    return false;
  }

  /** The tab with room and the fewest rows held for its capacity, among those not holding or having failed it. */
  private leastLoaded(entry: { holders: ReadonlySet<string>; failedBy?: ReadonlySet<string> }, rows: number): Tab | undefined {
    let best: Tab | undefined;
    let bestLoad = Number.POSITIVE_INFINITY;
    for (const tab of this.tabs.values()) {
      if (!tab.serving || entry.holders.has(tab.id) || entry.failedBy?.has(tab.id) === true) continue;
      // A tab with nothing held always takes a request, however large; otherwise up to its batches.
      if (tab.heldRows > 0 && tab.heldRows + rows > tab.maxBatch * this.config.outstandingBatches) continue;
      // A hedged copy goes only to an idle tab: under load every tab is slow, and a copy would only
      // double the work that makes it slow.
      if (entry.holders.size > 0 && tab.heldRows > 0) continue;
      const load = tab.heldRows / Math.max(tab.capacityRps ?? 1, MIN_CAPACITY_RPS);
      if (load < bestLoad) {
        best = tab;
        bestLoad = load;
      }
    }
    return best;
  }

  /** A request held by exactly one tab for longer than the attempt timeout is queued again for another. */
  private hedgeStale(now: number): void {
    const stale: number[] = [];
    for (const tab of this.tabs.values()) {
      for (const [id, held] of tab.held) {
        if (now - held.sentAt < this.config.attemptTimeoutMs) continue;
        const entry = this.requests.get(id);
        if (entry !== undefined && entry.holders.size === 1 && !this.inQueue.has(id)) stale.push(id);
      }
    }
    this.requeueFront(stale, now);
  }

  private requeueFront(ids: number[], now: number): void {
    // A hedged request may be queued already: once is enough.
    const live = ids.filter((id) => {
      const entry = this.requests.get(id);
      return entry !== undefined && entry.request.deadline > now && !this.inQueue.has(id);
    });
    live.sort((a, b) => (this.requests.get(a)?.request.arrivedAt ?? 0) - (this.requests.get(b)?.request.arrivedAt ?? 0));
    this.setQueue([...live, ...this.queue]);
  }

  private setQueue(ids: number[]): void {
    this.queue = ids;
    this.inQueue.clear();
    for (const id of ids) this.inQueue.add(id);
  }

  private forget(id: number, holders: ReadonlySet<string>, except: string | undefined, now: number): void {
    const entry = this.requests.get(id);
    if (entry !== undefined) this.pendingRows -= entry.request.rows;
    this.requests.delete(id);
    for (const holder of holders) if (holder !== except) this.tabs.get(holder)?.release(id, now, false);
  }
}
