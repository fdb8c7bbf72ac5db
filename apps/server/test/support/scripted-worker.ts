// A worker without a browser: speaks the coordinator protocol over a real WebSocket and applies a
// made-up gradient with the real optimizer, so the server's identities, state checks, commits and
// uploads are exercised for real. Used by the training, fuzz and load tests.
import { contributionDigest, createOptimizer, decodeState, encodeState, hashState, type ModelState } from "@crowdtrain/training";
import { committedOptimizer, parseCoordinatorMessage, PlanBook, PROTOCOL_VERSION, type Identity, type Job, type ResolvedCoordinatorMessage, type RoundMessage, type WorkerMessage } from "@crowdtrain/protocol";
import WebSocket from "ws";

/** Every wait of a scripted worker. */
export const SCRIPTED_WAIT_MS = 10_000;

export type ScriptedOptions = {
  name?: string;
  joinToken?: string;
  /** The memory the worker says it lends (hello's memoryMiB). */
  memoryMiB?: number;
  /** The role in its hello (default: none, a trainer). */
  role?: "trainer" | "server";
  /** Extra handshake headers (an Origin, say). */
  headers?: Record<string, string>;
  autoPong?: boolean;
};

export class ScriptedWorker {
  readonly inbox: ResolvedCoordinatorMessage[] = [];
  /** Round messages name an unchanged plan by number: resolved on receipt, like a real worker. */
  private readonly plans = new PlanBook();
  readonly ws: WebSocket;
  identity: Identity | undefined;
  job: Job | undefined;
  closed: { code: number; reason: string } | undefined;
  /** Statuses of the uploads the server asked for with `upload` (or the error). */
  readonly uploads: (number | string)[] = [];
  /** Statuses of the contributions uploaded for spot checks, by round (or the error). */
  readonly audits = new Map<number, number | string>();
  /** What this worker committed to per attempt, and what it uploads if audited (may differ: a liar). */
  private readonly contributions = new Map<number, Float32Array>();
  private state: ModelState | undefined;
  private pending: { attempt: number; state: ModelState } | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    readonly url: string,
    readonly options: ScriptedOptions = {},
  ) {
    this.ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws`, { headers: options.headers, autoPong: options.autoPong ?? true });
    this.ws.on("message", (data: Buffer) => {
      const message = this.plans.resolve(parseCoordinatorMessage(data.toString()));
      // Like a real worker: the server lacks a committed state we hold, so we send it.
      // (A commit and an upload request arrive together; the test may not have adopted the commit yet.)
      if (message.type === "upload" && (this.state?.round === message.round || this.pending?.state.round === message.round)) {
        this.upload(message.round).then(
          (response) => this.uploads.push(response.status),
          (error: unknown) => this.uploads.push(String(error)),
        );
      }
      // Like a real worker: a spot check of a committed round gets the contribution we committed to.
      if (message.type === "audit") {
        const contribution = this.contributions.get(message.attempt);
        const answer = contribution === undefined ? Promise.resolve("no contribution kept") : this.uploadContribution(message.round, contribution).then((r) => r.status);
        answer.then(
          (status) => this.audits.set(message.round, status),
          (error: unknown) => this.audits.set(message.round, String(error)),
        );
      }
      this.inbox.push(message);
      this.wake();
    });
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    this.ws.on("error", () => this.wake());
  }

  get peerId(): string {
    if (this.identity === undefined) throw new Error("not welcomed yet");
    return this.identity.peerId;
  }

  /** Opens the socket, says hello and waits for the welcome (with the identity it issues). */
  async join(): Promise<this> {
    await this.opened();
    const { memoryMiB, role } = this.options;
    this.send({ type: "hello", protocol: PROTOCOL_VERSION, backend: "cpu", name: this.options.name, joinToken: this.options.joinToken, ...(memoryMiB === undefined ? {} : { memoryMiB }), ...(role === undefined ? {} : { role }) });
    const welcome = await this.next("welcome");
    this.identity = welcome.identity;
    this.job = welcome.job;
    return this;
  }

  opened(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
    });
  }

  send(message: WorkerMessage | Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  async next<T extends ResolvedCoordinatorMessage["type"]>(type: T, waitMs = SCRIPTED_WAIT_MS): Promise<Extract<ResolvedCoordinatorMessage, { type: T }>> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const index = this.inbox.findIndex((m) => m.type === type);
      if (index >= 0) return this.inbox.splice(index, 1)[0] as Extract<ResolvedCoordinatorMessage, { type: T }>;
      if (this.closed !== undefined) throw new Error(`socket closed (${this.closed.code} ${this.closed.reason}) while waiting for ${type}`);
      if (Date.now() > deadline) throw new Error(`no ${type} within ${waitMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  /** Waits for the server to close the socket; returns its code and reason. */
  async closedBy(waitMs = SCRIPTED_WAIT_MS): Promise<{ code: number; reason: string }> {
    const deadline = Date.now() + waitMs;
    while (this.closed === undefined) {
      if (Date.now() > deadline) throw new Error(`the server did not close the socket within ${waitMs} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.closed;
  }

  /** Downloads the committed state and says ready. */
  async sync(): Promise<ModelState> {
    const response = await fetch(`${this.url}/api/state`);
    if (!response.ok) throw new Error(`GET /api/state: ${response.status} ${await response.text()}`);
    this.state = decodeState(new Uint8Array(await response.arrayBuffer()));
    this.send({ type: "ready", round: this.state.round, hash: this.state.hash });
    return this.state;
  }

  /**
   * Applies `update` (default: a made-up gradient that depends only on the round, so every honest
   * member computes the same update), reports the hash, and keeps the result pending. `tamper`
   * changes what is reported.
   */
  step(round: RoundMessage, tamper: { samples?: number; hash?: string } = {}, update?: Float32Array): ModelState {
    const base = this.need();
    const optimizer = createOptimizer(committedOptimizer(this.job!), base.weights.length);
    optimizer.restore(base.optimizer);
    const weights = base.weights.slice();
    optimizer.step(weights, update ?? new Float32Array(weights.length).fill(round.round / 100));
    const optimizerState = optimizer.state();
    const next: ModelState = { round: round.round, hash: hashState(weights, optimizerState), weights, optimizer: optimizerState };
    this.pending = { attempt: round.attempt, state: next };
    this.send({
      type: "result",
      attempt: round.attempt,
      hash: tamper.hash ?? next.hash,
      samples: tamper.samples ?? round.lease.length,
      loss: 2 - round.round / 10,
      timings: { computeMs: 5, readbackMs: 1, allReduceMs: 2, updateMs: 1 },
      bytesSent: 100,
      bytesReceived: 100,
    });
    return next;
  }

  /**
   * Enters the all-reduce of `round` committing to `committed` (its digest goes with the phase
   * message); a later spot check uploads `uploaded`, which an honest worker leaves equal.
   */
  contribute(round: RoundMessage, committed: Float32Array, uploaded: Float32Array = committed): void {
    this.contributions.set(round.attempt, uploaded);
    this.send({ type: "phase", attempt: round.attempt, phase: "reducing", digest: contributionDigest(committed) });
  }

  /** PUT /api/contribution/<round> as this worker. */
  async uploadContribution(round: number, gradient: Float32Array): Promise<Response> {
    return fetch(`${this.url}/api/contribution/${round}`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "x-crowdtrain-peer": this.peerId, authorization: `Bearer ${this.identity!.sessionToken}` },
      body: new Uint8Array(gradient.buffer, gradient.byteOffset, gradient.byteLength),
    });
  }

  /** PUT /api/state/<round> as this worker (its identity headers), with `bytes` or its pending state. */
  async upload(round: number, bytes?: Uint8Array<ArrayBuffer>): Promise<Response> {
    const body = bytes ?? encodeState(this.pendingState(round));
    return fetch(`${this.url}/api/state/${round}`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "x-crowdtrain-peer": this.peerId, authorization: `Bearer ${this.identity!.sessionToken}` },
      body,
    });
  }

  /** The round commits: the pending state becomes ours. */
  adopt(commit: Extract<ResolvedCoordinatorMessage, { type: "commit" }>): void {
    const pending = this.pending;
    if (pending?.attempt !== commit.attempt) throw new Error(`commit of ${commit.attempt}, pending ${pending?.attempt}`);
    if (pending.state.hash !== commit.hash) throw new Error(`committed ${commit.hash}, ours ${pending.state.hash}`);
    this.state = pending.state;
    this.pending = undefined;
  }

  /** One whole round as an honest member: compute, report, upload if asked, adopt the commit. */
  async honestRound(): Promise<Extract<ResolvedCoordinatorMessage, { type: "commit" }>> {
    return this.finishRound(await this.next("round"));
  }

  /** The rest of a round already received, as an honest member. */
  async finishRound(round: RoundMessage): Promise<Extract<ResolvedCoordinatorMessage, { type: "commit" }>> {
    this.step(round);
    if (round.upload) {
      const put = await this.upload(round.round);
      if (put.status !== 204) throw new Error(`upload of round ${round.round}: ${put.status} ${await put.text()}`);
    }
    const commit = await this.next("commit");
    this.adopt(commit);
    return commit;
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }

  private pendingState(round: number): ModelState {
    if (this.pending?.state.round === round) return this.pending.state;
    if (this.state?.round === round) return this.state;
    throw new Error(`no state of round ${round} to upload`);
  }

  /** The committed state this worker holds (after sync or adopt). */
  get held(): ModelState {
    return this.need();
  }

  private need(): ModelState {
    if (this.state === undefined) throw new Error("sync() first");
    return this.state;
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake();
  }
}
