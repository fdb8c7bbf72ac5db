import * as v from "valibot";
import { asciiJsonBytes, asciiText } from "./frames.ts";
import { parseJsonWith, PeerIdSchema } from "./messages.ts";
import { PROTOCOL_VERSION } from "./version.ts";

/**
 * Serving: the model the job trains, answering inference requests.
 *
 * Two boundaries live here:
 * - HTTP, `POST /api/predict`: a JSON body `{"inputs": number[][]}` (one row per sample, each row the
 *   model's flattened input) answered `{"outputs", "modelRound", "servedBy", "ms"}`; or a binary body
 *   (`Content-Type: application/octet-stream`, little-endian float32 rows, the shape in the
 *   `X-Shape: <rows>,<features>` header) answered with float32 outputs and the same facts in headers.
 * - The serve socket (`/ws/serve`) between the server and each serving tab: JSON control messages,
 *   and binary request and reply frames (`encodeServeRequest` / `decodeServeReply` below) so a batch
 *   of 784-float rows never goes through JSON.
 */

/** Rows one request may carry: a batch of a few thousand small inputs; larger work is split by the client. */
export const MAX_PREDICT_ROWS = 4_096;
/** Largest request body: MAX_PREDICT_ROWS rows of MNIST as float32 is 12.8 MB; JSON text is ~2-3x that. */
export const MAX_PREDICT_BODY_BYTES = 32 * 1024 * 1024;
/** The binary form's shape header. */
export const SHAPE_HEADER = "x-shape";
/** Headers of a binary answer: what the JSON answer carries beside its outputs. */
export const MODEL_ROUND_HEADER = "x-model-round";
export const SERVED_BY_HEADER = "x-served-by";
export const SERVE_MS_HEADER = "x-serve-ms";

const Round = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff));
const Secret = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{22,86}$/));

export const PredictRequestSchema = v.strictObject({
  inputs: v.pipe(v.array(v.array(v.pipe(v.number(), v.finite()))), v.minLength(1), v.maxLength(MAX_PREDICT_ROWS)),
});
export type PredictRequest = v.InferOutput<typeof PredictRequestSchema>;

export const PredictResponseSchema = v.strictObject({
  /** One row of class probabilities per input row. */
  outputs: v.array(v.array(v.number())),
  /** The committed training round whose weights answered. */
  modelRound: Round,
  /** The serving tab's peer id. */
  servedBy: PeerIdSchema,
  /** Time from the request's arrival to its answer, at the server. */
  ms: v.pipe(v.number(), v.minValue(0)),
});
export type PredictResponse = v.InferOutput<typeof PredictResponseSchema>;

// ---- the serve socket: control messages (JSON text) ----

/** First message of a serving tab: who it is (the identity its /ws session was issued). */
export const ServeHelloSchema = v.strictObject({
  type: v.literal("serve-hello"),
  protocol: v.literal(PROTOCOL_VERSION),
  peerId: PeerIdSchema,
  sessionToken: Secret,
  /** Rows the tab puts in one predict call at most. */
  maxBatch: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_PREDICT_ROWS)),
});
/** The tab holds the weights of committed `round` and takes requests (sent again after each hot swap). */
export const ServeLoadedSchema = v.strictObject({ type: v.literal("serve-loaded"), round: Round });
export const ServeTabMessageSchema = v.variant("type", [ServeHelloSchema, ServeLoadedSchema]);
export type ServeTabMessage = v.InferOutput<typeof ServeTabMessageSchema>;

/** The server's answer to the hello: the shape every request and reply has. */
export const ServeWelcomeSchema = v.strictObject({
  type: v.literal("serve-welcome"),
  features: v.pipe(v.number(), v.integer(), v.minValue(1)),
  classes: v.pipe(v.number(), v.integer(), v.minValue(1)),
  /** The newest committed round; the tab loads it if it holds an older one. */
  round: Round,
  /** Longest a tab may hold a request to fill a batch. */
  maxWaitMs: v.pipe(v.number(), v.minValue(0), v.maxValue(1_000)),
  /** Rows per predict call: the smaller of the tab's offer (its hello) and the server's `--serve-max-batch`. */
  maxBatch: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_PREDICT_ROWS)),
});
/** A newer committed round exists: load it between batches (hot swap). */
export const ServeModelSchema = v.strictObject({ type: v.literal("serve-model"), round: Round });
export const ServeServerMessageSchema = v.variant("type", [ServeWelcomeSchema, ServeModelSchema]);
export type ServeServerMessage = v.InferOutput<typeof ServeServerMessageSchema>;

export class ServeMessageError extends Error {
  override name = "ServeMessageError";
}

const serveError = (message: string): ServeMessageError => new ServeMessageError(message);
export const parseServeTabMessage = (raw: string): ServeTabMessage => parseJsonWith(ServeTabMessageSchema, "serve message", raw, serveError);
export const parseServeServerMessage = (raw: string): ServeServerMessage => parseJsonWith(ServeServerMessageSchema, "serve message", raw, serveError);

// ---- the serve socket: binary frames ----
//
// Little-endian, a 16-byte header (a multiple of 4, so the float32 payload is viewed without copying):
//   0  u8   kind     1 request (server -> tab), 2 reply, 3 error reply (tab -> server)
//   1  u8   version  SERVE_FRAME_VERSION
//   2  u16  reserved, 0
//   4  u32  id       the server's request id
//   8  u32  rows
//   12 u32  round    reply: the committed round that answered; request and error: 0
//   16 ...  payload  request: rows x features float32; reply: rows x classes float32; error: a JSON string, ASCII

export const SERVE_FRAME_VERSION = 1;
export const SERVE_HEADER_BYTES = 16;
/** Longest error text a tab may send back. */
const MAX_SERVE_ERROR_BYTES = 1_000;
export const ServeFrameKind = { request: 1, reply: 2, error: 3 } as const;

export type ServeRequestFrame = { id: number; rows: number; inputs: Float32Array };
export type ServeReply = { kind: "reply"; id: number; rows: number; round: number; outputs: Float32Array } | { kind: "error"; id: number; message: string };

export function encodeServeRequest(id: number, rows: number, inputs: Float32Array): Uint8Array {
  return frame(ServeFrameKind.request, id, rows, 0, new Uint8Array(inputs.buffer, inputs.byteOffset, inputs.byteLength));
}

export function encodeServeReply(id: number, rows: number, round: number, outputs: Float32Array): Uint8Array {
  return frame(ServeFrameKind.reply, id, rows, round, new Uint8Array(outputs.buffer, outputs.byteOffset, outputs.byteLength));
}

export function encodeServeError(id: number, message: string): Uint8Array {
  return frame(ServeFrameKind.error, id, 0, 0, asciiJsonBytes(message.slice(0, MAX_SERVE_ERROR_BYTES / 8)));
}

/** A request frame, at the tab: `features` floats per row, every one finite. */
export function decodeServeRequest(bytes: Uint8Array, features: number): ServeRequestFrame {
  const { kind, id, rows, payload } = header(bytes);
  if (kind !== ServeFrameKind.request) throw new ServeMessageError(`serve frame of kind ${kind} where a request was expected`);
  return { id, rows, inputs: floats(payload, rows * features, "request") };
}

/**
 * A frame from a serving tab: a reply must have exactly `classes` finite outputs per row of the
 * request it answers (`rowsOf(id)`, undefined for an id not outstanding on that tab).
 */
export function decodeServeReply(bytes: Uint8Array, classes: number, rowsOf: (id: number) => number | undefined): ServeReply {
  const { kind, id, rows, round, payload } = header(bytes);
  const expected = rowsOf(id);
  if (expected === undefined) throw new ServeMessageError(`serve reply for request ${id}, which is not outstanding on this tab`);
  if (kind === ServeFrameKind.error) {
    if (payload.byteLength > MAX_SERVE_ERROR_BYTES) throw new ServeMessageError(`serve error text of ${payload.byteLength} bytes (at most ${MAX_SERVE_ERROR_BYTES})`);
    return { kind: "error", id, message: errorText(payload) };
  }
  if (kind !== ServeFrameKind.reply) throw new ServeMessageError(`serve frame of kind ${kind} from a tab`);
  if (rows !== expected) throw new ServeMessageError(`serve reply for request ${id} has ${rows} rows; the request had ${expected}`);
  return { kind: "reply", id, rows, round, outputs: floats(payload, rows * classes, "reply") };
}

function errorText(payload: Uint8Array): string {
  let text: unknown;
  try {
    text = JSON.parse(asciiText(payload));
  } catch (error) {
    throw new ServeMessageError(`serve error text is not ASCII JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (typeof text !== "string") throw new ServeMessageError("serve error text is not a JSON string");
  return text;
}

function frame(kind: number, id: number, rows: number, round: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(SERVE_HEADER_BYTES + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, kind);
  view.setUint8(1, SERVE_FRAME_VERSION);
  view.setUint32(4, id, true);
  view.setUint32(8, rows, true);
  view.setUint32(12, round, true);
  out.set(payload, SERVE_HEADER_BYTES);
  return out;
}

function header(bytes: Uint8Array): { kind: number; id: number; rows: number; round: number; payload: Uint8Array } {
  if (bytes.byteLength < SERVE_HEADER_BYTES) throw new ServeMessageError(`serve frame of ${bytes.byteLength} bytes, shorter than its ${SERVE_HEADER_BYTES}-byte header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(1);
  if (version !== SERVE_FRAME_VERSION) throw new ServeMessageError(`serve frame version ${version}; this build speaks ${SERVE_FRAME_VERSION}`);
  if (view.getUint16(2, true) !== 0) throw new ServeMessageError("serve frame with non-zero reserved bytes");
  const rows = view.getUint32(8, true);
  if (rows > MAX_PREDICT_ROWS) throw new ServeMessageError(`serve frame of ${rows} rows (at most ${MAX_PREDICT_ROWS})`);
  return { kind: view.getUint8(0), id: view.getUint32(4, true), rows, round: view.getUint32(12, true), payload: bytes.subarray(SERVE_HEADER_BYTES) };
}

function floats(payload: Uint8Array, count: number, what: string): Float32Array {
  if (payload.byteLength !== count * 4) throw new ServeMessageError(`serve ${what} carries ${payload.byteLength} bytes; its shape needs ${count * 4}`);
  // Aligned (the header is 16 bytes) unless the transport handed a view at an odd offset: copy then.
  const values = payload.byteOffset % 4 === 0 ? new Float32Array(payload.buffer, payload.byteOffset, count) : new Float32Array(payload.slice().buffer);
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new ServeMessageError(`serve ${what} holds a non-finite value at ${i}`);
  }
  return values;
}
