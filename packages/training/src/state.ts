import * as v from "valibot";
import { hashState, type StateHasher } from "./hash.ts";
import type { OptimizerState } from "./optimizers.ts";

/**
 * A model state on the wire and on disk: what a joiner downloads, what the round's uploader sends,
 * what a checkpoint holds. Binary, so 100k weights cost 400 KB rather than megabytes of JSON:
 *
 *   "CTST" | u32 version | u32 header bytes H | H bytes of ASCII JSON header, space-padded to a
 *   multiple of 4 | weights (float32 LE) | each optimizer buffer (float32 LE), in order
 *
 * The header says the round, the weights hash, the sizes, and the optimizer's kind, step and scalars.
 */
export const STATE_MAGIC = "CTST";
export const STATE_VERSION = 2;
/** The header is a few hundred bytes of JSON; anything larger is refused before it is read. */
export const MAX_STATE_HEADER_BYTES = 4096;

export type ModelState = {
  /** Committed round these weights are the result of (0 = initial weights). */
  round: number;
  hash: string;
  weights: Float32Array;
  optimizer: OptimizerState;
};

const HeaderSchema = v.strictObject({
  round: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** SHA-256 of weights and optimizer state (hashState). */
  hash: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
  weightCount: v.pipe(v.number(), v.integer(), v.minValue(0)),
  optimizer: v.strictObject({
    kind: v.picklist(["sgd", "adam"]),
    step: v.pipe(v.number(), v.integer(), v.minValue(0)),
    scalars: v.pipe(v.array(v.pipe(v.number(), v.finite())), v.maxLength(8)),
    buffers: v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(8)),
  }),
});

export class StateError extends Error {
  override name = "StateError";
}

export function encodeState(state: ModelState): Uint8Array<ArrayBuffer> {
  for (const buffer of state.optimizer.buffers) {
    if (buffer.length !== state.weights.length) throw new StateError(`optimizer buffer of ${buffer.length}, weights of ${state.weights.length}`);
  }
  const header = JSON.stringify({
    round: state.round,
    hash: state.hash,
    weightCount: state.weights.length,
    optimizer: { kind: state.optimizer.kind, step: state.optimizer.step, scalars: state.optimizer.scalars, buffers: state.optimizer.buffers.length },
  });
  const headerBytes = Math.ceil(header.length / 4) * 4;
  const floats = state.weights.length * (1 + state.optimizer.buffers.length);
  const bytes = new Uint8Array(12 + headerBytes + floats * 4);
  const view = new DataView(bytes.buffer);
  for (let k = 0; k < 4; k++) bytes[k] = STATE_MAGIC.charCodeAt(k);
  view.setUint32(4, STATE_VERSION, true);
  view.setUint32(8, headerBytes, true);
  bytes.fill(0x20, 12, 12 + headerBytes);
  for (let k = 0; k < header.length; k++) bytes[12 + k] = header.charCodeAt(k);
  const body = new Float32Array(bytes.buffer, 12 + headerBytes, floats);
  body.set(state.weights, 0);
  state.optimizer.buffers.forEach((buffer, k) => body.set(buffer, state.weights.length * (k + 1)));
  return bytes;
}

/** Decodes and checks a state; the arrays are copies, safe to keep and mutate. */
export function decodeState(bytes: Uint8Array, expectedWeights?: number): ModelState {
  if (bytes.byteLength < 12) throw new StateError(`state of ${bytes.byteLength} bytes is too short`);
  const magic = String.fromCharCode(bytes[0] ?? 0, bytes[1] ?? 0, bytes[2] ?? 0, bytes[3] ?? 0);
  if (magic !== STATE_MAGIC) throw new StateError(`not a model state (magic ${JSON.stringify(magic)})`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(4, true);
  if (version !== STATE_VERSION) throw new StateError(`state version ${version}, expected ${STATE_VERSION}`);
  const headerBytes = view.getUint32(8, true);
  if (headerBytes % 4 !== 0 || headerBytes > MAX_STATE_HEADER_BYTES || 12 + headerBytes > bytes.byteLength) {
    throw new StateError(`bad header length ${headerBytes} (a multiple of 4, at most ${MAX_STATE_HEADER_BYTES})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + headerBytes)));
  } catch (error) {
    throw new StateError(`state header is not JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const parsed = v.safeParse(HeaderSchema, json);
  if (!parsed.success) throw new StateError(`bad state header: ${v.summarize(parsed.issues)}`);
  const header = parsed.output;
  if (expectedWeights !== undefined && header.weightCount !== expectedWeights) {
    throw new StateError(`state has ${header.weightCount} weights, the model has ${expectedWeights}`);
  }
  const floats = header.weightCount * (1 + header.optimizer.buffers);
  if (bytes.byteLength !== 12 + headerBytes + floats * 4) {
    throw new StateError(`state is ${bytes.byteLength} bytes, its header promises ${12 + headerBytes + floats * 4}`);
  }
  // new Uint8Array(view) copies into a fresh, aligned buffer whatever the input's offset (a Node
  // Buffer's slice() would not: it returns a view into a shared pool).
  const body = new Float32Array(new Uint8Array(bytes.subarray(12 + headerBytes)).buffer);
  const n = header.weightCount;
  return {
    round: header.round,
    hash: header.hash,
    weights: body.slice(0, n),
    optimizer: {
      kind: header.optimizer.kind,
      step: header.optimizer.step,
      scalars: header.optimizer.scalars,
      buffers: Array.from({ length: header.optimizer.buffers }, (_, k) => body.slice(n * (k + 1), n * (k + 2))),
    },
  };
}

/**
 * Why a decoded state cannot be adopted, or undefined when it can: every number finite (a NaN
 * weight poisons every later round), and the header's hash is the SHA-256 of its contents.
 */
export function stateProblem(state: ModelState, hashOf: StateHasher = hashState): string | undefined {
  const bad = firstNonFinite(state.weights);
  if (bad !== undefined) return `weight ${bad} is ${state.weights[bad]}`;
  for (const [k, buffer] of state.optimizer.buffers.entries()) {
    const at = firstNonFinite(buffer);
    if (at !== undefined) return `optimizer buffer ${k} holds ${buffer[at]} at ${at}`;
  }
  const hash = hashOf(state.weights, state.optimizer);
  if (hash !== state.hash) return `contents hash to ${hash}, the header says ${state.hash}`;
  return undefined;
}

function firstNonFinite(values: Float32Array): number | undefined {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return i;
  return undefined;
}
