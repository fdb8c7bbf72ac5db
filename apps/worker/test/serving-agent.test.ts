import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { decodeServeReply, encodeServeRequest, type ServeReply, type ServeServerMessage, type ServeTabMessage } from "@crowdtrain/protocol";
import { MIN_SWAP_INTERVAL_MS, SERVE_RECONNECT_MIN_MS, startServingAgent, type ServeSocket } from "../src/serving/agent.ts";

const IDENTITY = { peerId: "w-a", sessionToken: "s".repeat(22), peerKey: "k".repeat(22), peerToken: "t".repeat(22) };
const FEATURES = 3;
const CLASSES = 2;

/** The server's end of a serve socket: what the agent sent, and a way to send it messages. */
class FakeSocket implements ServeSocket {
  binaryType: BinaryType = "blob";
  readyState = 0;
  readonly texts: ServeTabMessage[] = [];
  readonly replies: ServeReply[] = [];
  closed: { code?: number; reason?: string } | undefined;
  private readonly listeners = new Map<string, ((event: { data?: unknown; code?: number; reason?: string }) => void)[]>();
  /** Rows of each request id sent, for decoding replies. */
  private readonly rows = new Map<number, number>();

  addEventListener(type: string, listener: (event: { data?: unknown }) => void): void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }
  send(data: string | ArrayBufferView): void {
    if (typeof data === "string") this.texts.push(JSON.parse(data) as ServeTabMessage);
    else this.replies.push(decodeServeReply(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), CLASSES, (id) => this.rows.get(id)));
  }
  close(code?: number, reason?: string): void {
    this.closed = { ...(code === undefined ? {} : { code }), ...(reason === undefined ? {} : { reason }) };
    this.readyState = 3;
  }
  open(): void {
    this.readyState = 1;
    this.emit("open", {});
  }
  message(message: ServeServerMessage): void {
    this.emit("message", { data: JSON.stringify(message) });
  }
  request(id: number, rows: number, value: number): void {
    this.rows.set(id, rows);
    const frame = encodeServeRequest(id, rows, new Float32Array(rows * FEATURES).fill(value));
    this.emit("message", { data: frame.slice().buffer });
  }
  /** The server closes it. */
  drop(code: number, reason: string): void {
    this.readyState = 3;
    this.emit("close", { code, reason });
  }
  private emit(type: string, event: { data?: unknown; code?: number; reason?: string }): void {
    for (const listener of this.listeners.get(type) ?? []) listener(event);
  }
}

type Deferred = { rows: number; resolve: () => void };

/** A trainer stand-in: each predict waits for the test to finish it; output = the row's first input + the round. */
function fakeTrainer(): { calls: Deferred[]; round: number; loads: number[]; predict(inputs: Float32Array, rows: number): Promise<{ outputs: Float32Array; round: number; ms: number }>; loadRound(round: number): Promise<number> } {
  const trainer = {
    calls: [] as Deferred[],
    round: 4,
    loads: [] as number[],
    predict(inputs: Float32Array, rows: number) {
      const round = trainer.round;
      return new Promise<{ outputs: Float32Array; round: number; ms: number }>((resolve) => {
        trainer.calls.push({ rows, resolve: () => resolve({ outputs: Float32Array.from({ length: rows * CLASSES }, (_, k) => (inputs[Math.floor(k / CLASSES) * FEATURES] as number) + round), round, ms: 1 }) });
      });
    },
    async loadRound(round: number) {
      trainer.loads.push(round);
      trainer.round = round;
      return round;
    },
  };
  return trainer;
}

function start(maxBatch = 4) {
  const sockets: FakeSocket[] = [];
  const trainer = fakeTrainer();
  const openSocket = (): FakeSocket => {
    sockets.push(new FakeSocket());
    return sockets.at(-1) as FakeSocket;
  };
  const agent = startServingAgent({ socketUrl: "ws://test/ws/serve", identity: IDENTITY, heldRound: 4, predict: (inputs, rows) => trainer.predict(inputs, rows), loadRound: (round) => trainer.loadRound(round), maxBatch, openSocket, now: () => Date.now() });
  const socket = sockets[0] as FakeSocket;
  socket.open();
  return { socket, sockets, trainer, agent };
}

const welcome = (round: number, maxWaitMs = 10, maxBatch = 4): ServeServerMessage => ({ type: "serve-welcome", features: FEATURES, classes: CLASSES, round, maxWaitMs, maxBatch });
const settle = () => vi.advanceTimersByTimeAsync(0);

describe("the serving agent", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("says hello with its identity, takes requests with the round it holds, and batches what arrives within maxWaitMs", async () => {
    const { socket, trainer } = start();
    expect(socket.binaryType).toBe("arraybuffer");
    expect(socket.texts[0]).toMatchObject({ type: "serve-hello", peerId: "w-a", sessionToken: IDENTITY.sessionToken, maxBatch: 4 });
    socket.message(welcome(4));
    expect(socket.texts[1]).toEqual({ type: "serve-loaded", round: 4 });
    socket.request(1, 1, 10);
    socket.request(2, 2, 20);
    await vi.advanceTimersByTimeAsync(5);
    expect(trainer.calls).toEqual([]);
    await vi.advanceTimersByTimeAsync(5);
    // One predict call for both requests: 3 rows.
    expect(trainer.calls.map((c) => c.rows)).toEqual([3]);
    trainer.calls[0]?.resolve();
    await settle();
    expect(socket.replies.map((r) => r.id)).toEqual([1, 2]);
    const [first, second] = socket.replies;
    expect(first?.kind === "reply" && [...first.outputs]).toEqual([14, 14]);
    expect(second?.kind === "reply" && [first?.kind === "reply" && first.round, second.rows, [...second.outputs]]).toEqual([4, 2, [24, 24, 24, 24]]);
  });

  it("a full batch goes at once, without waiting", async () => {
    const { socket, trainer } = start(2);
    socket.message(welcome(4, 500, 2));
    socket.request(1, 2, 1);
    await settle();
    expect(trainer.calls.map((c) => c.rows)).toEqual([2]);
  });

  it("batches by the server's bound when it is below the tab's offer (--serve-max-batch)", async () => {
    const { socket, trainer } = start(4);
    expect(socket.texts[0]).toMatchObject({ type: "serve-hello", maxBatch: 4 });
    socket.message(welcome(4, 500, 1));
    socket.request(1, 1, 0);
    socket.request(2, 1, 0);
    await settle();
    // A batch of one row at once, without waiting 500 ms for a second.
    expect(trainer.calls.map((c) => c.rows)).toEqual([1]);
  });

  it("hot-swaps to a newer round only between batches: a batch in flight is answered by the old weights, the next by the new", async () => {
    const { socket, trainer } = start();
    socket.message(welcome(4, 0));
    socket.request(1, 1, 0);
    await settle();
    expect(trainer.calls).toHaveLength(1);
    socket.message({ type: "serve-model", round: 7 });
    socket.request(2, 1, 0);
    await settle();
    // Nothing swaps while the predict is in flight.
    expect(trainer.loads).toEqual([]);
    trainer.calls[0]?.resolve();
    await settle();
    expect(trainer.loads).toEqual([7]);
    expect(socket.texts.at(-1)).toEqual({ type: "serve-loaded", round: 7 });
    trainer.calls[1]?.resolve();
    await settle();
    expect(socket.replies.map((r) => (r.kind === "reply" ? [r.id, r.round] : r))).toEqual([
      [1, 4],
      [2, 7],
    ]);
  });

  it("swaps at most every MIN_SWAP_INTERVAL_MS, to the newest round by then", async () => {
    const { socket, trainer } = start();
    socket.message(welcome(5, 0));
    await settle();
    expect(trainer.loads).toEqual([5]);
    socket.message({ type: "serve-model", round: 6 });
    socket.message({ type: "serve-model", round: 8 });
    await vi.advanceTimersByTimeAsync(MIN_SWAP_INTERVAL_MS - 100);
    expect(trainer.loads).toEqual([5]);
    await vi.advanceTimersByTimeAsync(200);
    expect(trainer.loads).toEqual([5, 8]);
  });

  it("a failed predict answers each request of the batch with an error frame (the server retries them) and goes on serving", async () => {
    const { socket, trainer } = start();
    socket.message(welcome(4, 0));
    trainer.predict = () => Promise.reject(new Error("device lost"));
    socket.request(1, 1, 0);
    await settle();
    expect(socket.replies).toEqual([{ kind: "error", id: 1, message: "predict failed: device lost" }]);
    expect(socket.closed).toBeUndefined();
  });

  it("a socket the server drops is opened again after a backoff, with a new hello; requests waiting on the old one are dropped (the server retried them)", async () => {
    const { socket, sockets, trainer } = start();
    socket.message(welcome(4, 1_000));
    socket.request(1, 1, 0);
    socket.drop(1006, "gone");
    expect(sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(SERVE_RECONNECT_MIN_MS);
    expect(sockets).toHaveLength(2);
    const second = sockets[1] as FakeSocket;
    second.open();
    expect(second.texts[0]).toMatchObject({ type: "serve-hello", peerId: "w-a" });
    second.message(welcome(4, 0));
    await vi.advanceTimersByTimeAsync(1_000);
    // Request 1 went with the old socket: nothing predicts it.
    expect(trainer.calls).toEqual([]);
    second.request(2, 1, 0);
    await settle();
    expect(trainer.calls).toHaveLength(1);
    // After a socket that opened, the backoff starts over; a socket that never opens doubles it.
    second.drop(1006, "gone");
    await vi.advanceTimersByTimeAsync(SERVE_RECONNECT_MIN_MS);
    expect(sockets).toHaveLength(3);
    (sockets[2] as FakeSocket).drop(1006, "refused");
    await vi.advanceTimersByTimeAsync(SERVE_RECONNECT_MIN_MS);
    expect(sockets).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(SERVE_RECONNECT_MIN_MS);
    expect(sockets).toHaveLength(4);
  });

  it("stops on a bad message from the server, and stop() closes the socket and drops what waits", async () => {
    const bad = start();
    bad.socket.message(welcome(4));
    bad.socket.request(9, 1, Number.NaN);
    expect(bad.socket.closed?.reason).toMatch(/bad serve message: serve request holds a non-finite value/);
    const { socket, trainer, agent } = start();
    socket.message(welcome(4, 1_000));
    socket.request(1, 1, 0);
    agent.stop();
    expect(socket.closed).toEqual({ code: 1000, reason: "stopped serving" });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(trainer.calls).toEqual([]);
  });
});
