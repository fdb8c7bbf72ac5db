// Serving tabs without a browser, for the serving tests: a member joined on /ws (as a "server", or
// as a trainer) and its serve socket on /ws/serve, played by hand so a test decides what each
// request frame gets back (a reply, an error frame, silence, a reply for the wrong id). Every wait
// has a named timeout.
import {
  decodeServeRequest,
  encodeServeError,
  encodeServeReply,
  parseCoordinatorMessage,
  parseServeServerMessage,
  PROTOCOL_VERSION,
  type CoordinatorMessage,
  type Identity,
  type MemberRole,
  type ServeRequestFrame,
  type ServeServerMessage,
} from "@crowdtrain/protocol";
import WebSocket from "ws";

/** How long a handshake, an expected message or an expected close may take on loopback. */
export const TAB_WAIT_MS = 5_000;

const wsUrl = (url: string, path: string): string => `${url.replace(/^http/, "ws")}${path}`;

/** Polls `check` until it holds or `ms` passes (then throws naming `what`). */
export async function until(check: () => boolean, what: string, ms = TAB_WAIT_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((done) => setTimeout(done, 10));
  }
}

function opened(ws: WebSocket): Promise<void> {
  if (ws.readyState === WebSocket.OPEN) return Promise.resolve();
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`WebSocket not open within ${TAB_WAIT_MS} ms`)), TAB_WAIT_MS);
    ws.once("open", () => {
      clearTimeout(timer);
      done();
    });
    ws.once("error", (error) => {
      clearTimeout(timer);
      fail(error);
    });
  });
}

/** A member of the job on /ws: says hello (with `role` when given) and keeps every message it gets. */
export class Member {
  readonly ws: WebSocket;
  readonly inbox: CoordinatorMessage[] = [];
  identity: Identity | undefined;
  closed: { code: number; reason: string } | undefined;

  constructor(
    readonly url: string,
    readonly role?: MemberRole,
  ) {
    this.ws = new WebSocket(wsUrl(url, "/ws"));
    this.ws.on("message", (data: Buffer) => this.inbox.push(parseCoordinatorMessage(data.toString())));
    this.ws.on("close", (code, reason) => (this.closed = { code, reason: reason.toString() }));
    this.ws.on("error", () => undefined);
  }

  get peerId(): string {
    if (this.identity === undefined) throw new Error("not welcomed yet");
    return this.identity.peerId;
  }

  async join(): Promise<this> {
    await opened(this.ws);
    this.ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, backend: "cpu", name: `member-${this.role ?? "trainer"}`, ...(this.role === undefined ? {} : { role: this.role }) }));
    await until(() => this.inbox.some((m) => m.type === "welcome"), "the welcome");
    const welcome = this.inbox.find((m) => m.type === "welcome");
    if (welcome?.type !== "welcome") throw new Error("no welcome");
    this.identity = welcome.identity;
    return this;
  }

  close(): void {
    this.ws.terminate();
  }
}

export type Reply = { kind: "reply"; outputs: Float32Array; round?: number } | { kind: "error"; message: string } | { kind: "hold" };

/**
 * A serve socket. Request frames are decoded and kept in `requests`; `answer` decides what each
 * gets at once (default: nothing; the test answers by hand with reply/fail).
 */
export class ServeTab {
  readonly ws: WebSocket;
  /** Text messages from the server, parsed. */
  readonly messages: ServeServerMessage[] = [];
  /** Request frames received, in order. */
  readonly requests: ServeRequestFrame[] = [];
  /** Binary frames received that were not requests this tab could decode (should stay empty). */
  readonly undecoded: Uint8Array[] = [];
  closed: { code: number; reason: string } | undefined;
  welcome: Extract<ServeServerMessage, { type: "serve-welcome" }> | undefined;
  /** What each request frame gets at once; "hold" leaves it to the test. */
  answer: (request: ServeRequestFrame) => Reply = () => ({ kind: "hold" });

  constructor(readonly url: string) {
    this.ws = new WebSocket(wsUrl(url, "/ws/serve"));
    this.ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        const message = parseServeServerMessage(data.toString());
        if (message.type === "serve-welcome") this.welcome = message;
        this.messages.push(message);
        return;
      }
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      let request: ServeRequestFrame;
      try {
        // The inputs are copied out: the socket's buffer is reused.
        const frame = decodeServeRequest(bytes, this.welcome?.features ?? 0);
        request = { ...frame, inputs: frame.inputs.slice() };
      } catch {
        this.undecoded.push(bytes.slice());
        return;
      }
      this.requests.push(request);
      const reply = this.answer(request);
      if (reply.kind === "reply") this.reply(request.id, request.rows, reply.outputs, reply.round);
      else if (reply.kind === "error") this.fail(request.id, reply.message);
    });
    this.ws.on("close", (code, reason) => (this.closed = { code, reason: reason.toString() }));
    this.ws.on("error", () => undefined);
  }

  opened(): Promise<void> {
    return opened(this.ws);
  }

  /** Sends serve-hello as `identity` (any fields overridden) and, unless refused, waits for the welcome. */
  async hello(identity: Pick<Identity, "peerId" | "sessionToken">, options: { maxBatch?: number; expectWelcome?: boolean } = {}): Promise<this> {
    await this.opened();
    this.send({ type: "serve-hello", protocol: PROTOCOL_VERSION, peerId: identity.peerId, sessionToken: identity.sessionToken, maxBatch: options.maxBatch ?? 32 });
    if (options.expectWelcome !== false) await until(() => this.welcome !== undefined || this.closed !== undefined, "the serve-welcome");
    if (options.expectWelcome !== false && this.welcome === undefined) throw new Error(`serve socket closed instead of welcomed: ${JSON.stringify(this.closed)}`);
    return this;
  }

  /** Says it holds the welcome's round (or `round`): requests may come now. */
  loaded(round = this.welcome?.round ?? 0): this {
    this.send({ type: "serve-loaded", round });
    return this;
  }

  send(message: Record<string, unknown>): void {
    this.ws.send(JSON.stringify(message));
  }

  reply(id: number, rows: number, outputs: Float32Array, round = this.welcome?.round ?? 0): void {
    this.ws.send(encodeServeReply(id, rows, round, outputs));
  }

  fail(id: number, message: string): void {
    this.ws.send(encodeServeError(id, message));
  }

  /** The `index`th request frame this tab received (0: the first), waiting for it if need be. */
  async request(index: number): Promise<ServeRequestFrame> {
    await until(() => this.requests.length > index || this.closed !== undefined, `request frame #${index}`);
    const request = this.requests[index];
    if (request === undefined) throw new Error(`serve socket closed (${JSON.stringify(this.closed)}) while waiting for request frame #${index}`);
    return request;
  }

  async closedBy(ms = TAB_WAIT_MS): Promise<{ code: number; reason: string }> {
    await until(() => this.closed !== undefined, "the serve socket's close", ms);
    return this.closed as { code: number; reason: string };
  }

  close(): void {
    this.ws.terminate();
  }
}
