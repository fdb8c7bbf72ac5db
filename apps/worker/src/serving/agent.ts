import {
  decodeServeRequest,
  encodeServeError,
  encodeServeReply,
  parseServeServerMessage,
  PROTOCOL_VERSION,
  type Identity,
  type ServeTabMessage,
} from "@crowdtrain/protocol";
import { Batcher } from "@crowdtrain/serving";
import type { PredictReport } from "../trainer/api.ts";

/** A hot swap at most this often: a round commits every second or so, a state download costs more. */
export const MIN_SWAP_INTERVAL_MS = 2_000;
/** A serve socket that drops (a server restart, a refusal) is opened again after this, doubling up to the max. */
export const SERVE_RECONNECT_MIN_MS = 500;
export const SERVE_RECONNECT_MAX_MS = 10_000;
/** Rows per predict call unless the page says otherwise (the server's default --serve-max-batch). */
export const DEFAULT_MAX_BATCH = 32;

/** The slice of a WebSocket the agent uses (a fake in tests). */
export type ServeSocket = {
  binaryType: BinaryType;
  readonly readyState: number;
  send(data: string | ArrayBufferView): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: "open" | "close" | "message", listener: (event: { data?: unknown; code?: number; reason?: string }) => void): void;
};

export type ServingAgentDeps = {
  /** ws(s)://host/ws/serve */
  socketUrl: string;
  identity: Identity;
  /** The committed round the trainer holds now (the session's). */
  heldRound: number;
  predict(inputs: Float32Array, rows: number): Promise<PredictReport>;
  /** Downloads and loads the committed state of `round` (a hot swap); resolves with the round loaded. */
  loadRound(round: number): Promise<number>;
  maxBatch?: number;
  openSocket?: (url: string) => ServeSocket;
  onStatus?: (status: ServingAgentStatus) => void;
  now?: () => number;
};

/** `batches`, `rows` and `predictMs` (time inside predict calls) give the tab's own throughput. */
export type ServingAgentStatus = { served: number; batches: number; rows: number; predictMs: number; round: number; lastError: string | undefined };

type Queued = { id: number; rows: number; inputs: Float32Array };

/**
 * A tab's serving: the serve socket, a Batcher (requests wait at most the server's maxWaitMs to
 * share one predict call), and hot swaps to newer committed rounds between batches, so a request in
 * flight is always answered by one whole model and none is dropped for a swap. Owns its socket and
 * timers; stop() closes both, and the server retries on another tab whatever this tab still held.
 */
export function startServingAgent(deps: ServingAgentDeps): { stop(): void } {
  const now = deps.now ?? (() => performance.now());
  const maxBatch = deps.maxBatch ?? DEFAULT_MAX_BATCH;
  const open = deps.openSocket ?? ((url) => new WebSocket(url) as ServeSocket);
  let socket: ServeSocket;
  let reconnects = 0;
  let reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  let shape: { features: number; classes: number } | undefined;
  let batcher: Batcher<Queued> | undefined;
  let round = deps.heldRound;
  let latest = deps.heldRound;
  let lastSwapAt = Number.NEGATIVE_INFINITY;
  let busy = false;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const status: ServingAgentStatus = { served: 0, batches: 0, rows: 0, predictMs: 0, round, lastError: undefined };
  const publish = (patch: Partial<ServingAgentStatus>): void => {
    Object.assign(status, patch);
    deps.onStatus?.({ ...status });
  };
  const send = (message: ServeTabMessage | Uint8Array): void => {
    if (socket.readyState !== 1) return;
    socket.send(message instanceof Uint8Array ? message : JSON.stringify(message));
  };
  const fail = (why: string): void => {
    publish({ lastError: why });
    stop(why);
  };

  /** Runs the next due batch, or a due hot swap, or sets the timer for when one is due. */
  const pump = (): void => {
    if (stopped || busy || batcher === undefined) return;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    if (latest > round && now() - lastSwapAt >= MIN_SWAP_INTERVAL_MS) return void swap(latest);
    const batch = batcher.take(now());
    if (batch.length > 0) return void answer(batch);
    const due = Math.min(batcher.dueAt() ?? Number.POSITIVE_INFINITY, latest > round ? lastSwapAt + MIN_SWAP_INTERVAL_MS : Number.POSITIVE_INFINITY);
    if (Number.isFinite(due)) timer = setTimeout(pump, Math.max(0, due - now()));
  };

  const answer = async (batch: Queued[]): Promise<void> => {
    busy = true;
    const rows = batch.reduce((sum, q) => sum + q.rows, 0);
    const features = shape?.features ?? 0;
    const classes = shape?.classes ?? 0;
    const inputs = new Float32Array(rows * features);
    let at = 0;
    for (const q of batch) {
      inputs.set(q.inputs, at * features);
      at += q.rows;
    }
    try {
      const started = now();
      const report = await deps.predict(inputs, rows);
      publish({ batches: status.batches + 1, rows: status.rows + rows, predictMs: status.predictMs + (now() - started) });
      at = 0;
      for (const q of batch) {
        send(encodeServeReply(q.id, q.rows, report.round, report.outputs.subarray(at * classes, (at + q.rows) * classes)));
        at += q.rows;
      }
      publish({ served: status.served + batch.length });
    } catch (error) {
      // The server retries these on another tab; this tab says why and goes on.
      const why = `predict failed: ${error instanceof Error ? error.message : String(error)}`;
      for (const q of batch) send(encodeServeError(q.id, why));
      publish({ lastError: why });
    } finally {
      busy = false;
    }
    pump();
  };

  const swap = async (target: number): Promise<void> => {
    busy = true;
    lastSwapAt = now();
    try {
      round = await deps.loadRound(target);
      publish({ round });
      send({ type: "serve-loaded", round });
    } catch (error) {
      // Keep serving the weights we hold; try again at the next interval.
      publish({ lastError: `loading round ${target} failed: ${error instanceof Error ? error.message : String(error)}` });
    } finally {
      busy = false;
    }
    pump();
  };

  const onText = (text: string): void => {
    const message = parseServeServerMessage(text);
    if (message.type === "serve-welcome") {
      shape = { features: message.features, classes: message.classes };
      // The server's bound may be below our offer (--serve-max-batch).
      batcher = new Batcher<Queued>(message.maxBatch, message.maxWaitMs);
      latest = Math.max(latest, message.round);
      // Take requests with the weights held unless they are older than the server's.
      if (latest === round) send({ type: "serve-loaded", round });
      else lastSwapAt = Number.NEGATIVE_INFINITY;
    } else {
      latest = Math.max(latest, message.round);
    }
    pump();
  };

  const onBinary = (bytes: ArrayBuffer): void => {
    if (shape === undefined || batcher === undefined) throw new Error("a request arrived before serve-welcome");
    const request = decodeServeRequest(new Uint8Array(bytes), shape.features);
    batcher.add({ id: request.id, rows: request.rows, inputs: request.inputs }, now());
    pump();
  };

  /**
   * Opens the serve socket. When it drops while this tab still serves, the server has already
   * retried what it held elsewhere: the waiting requests are dropped and a new socket says hello
   * again, after a backoff.
   */
  const connect = (): void => {
    reconnectTimer = undefined;
    const ws = open(deps.socketUrl);
    socket = ws;
    ws.binaryType = "arraybuffer";
    ws.addEventListener("open", () => {
      reconnects = 0;
      send({ type: "serve-hello", protocol: PROTOCOL_VERSION, peerId: deps.identity.peerId, sessionToken: deps.identity.sessionToken, maxBatch });
    });
    ws.addEventListener("message", (event) => {
      if (stopped || ws !== socket) return;
      try {
        if (typeof event.data === "string") onText(event.data);
        else if (event.data instanceof ArrayBuffer) onBinary(event.data);
        else throw new Error("a serve message that is neither text nor binary");
      } catch (error) {
        fail(`the server sent a bad serve message: ${error instanceof Error ? error.message : String(error)}`);
      }
    });
    ws.addEventListener("close", (event) => {
      if (stopped || ws !== socket) return;
      batcher?.clear();
      batcher = undefined;
      shape = undefined;
      const delay = Math.min(SERVE_RECONNECT_MAX_MS, SERVE_RECONNECT_MIN_MS * 2 ** reconnects++);
      publish({ lastError: `serve socket closed (${event.code ?? "?"}${event.reason ? `: ${event.reason}` : ""}); reconnecting in ${delay} ms` });
      reconnectTimer = setTimeout(connect, delay);
    });
  };
  connect();

  function stop(reason: string): void {
    if (stopped) return;
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    if (reconnectTimer !== undefined) clearTimeout(reconnectTimer);
    timer = undefined;
    batcher?.clear();
    socket.close(1000, reason.slice(0, 120));
  }
  return { stop: () => stop("stopped serving") };
}
