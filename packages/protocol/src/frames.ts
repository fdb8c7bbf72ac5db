/**
 * Binary frames for tensor data between peers.
 *
 * Tensor chunks never go through JSON: a frame is a fixed 20-byte little-endian header followed by
 * a payload. The header is a multiple of 4 bytes so a float32 payload can be viewed as a
 * Float32Array without copying.
 *
 *   offset size field
 *   0      1    version   (FRAME_VERSION)
 *   1      1    kind      (FrameKind)
 *   2      2    step      schedule step within the phase (ring kinds); 0 for direct kinds
 *   4      4    attempt   the coordinator's attempt id of this all-reduce (unique, increasing)
 *   8      4    segment   segment index in the ring partition; shard index for direct kinds
 *   12     4    offset    chunk offset inside the segment (shard): elements, or pairs for "topk"
 *   16     1    codec     FRAME_CODEC_IDS of the payload (data kinds); 0 for abort
 *   17     1    stage     RingStage of a ring data frame: which ring of a plan it travels (0 otherwise)
 *   18     2    reserved, must be 0
 *   20     ...  payload   the codec's bytes (data kinds) or ASCII JSON (abort)
 *
 * Version 2 added the codec byte: a ring round may carry its chunks compressed ("fp16", "int8",
 * "topk"; packages/allreduce/src/codecs owns their layouts and checks their contents). This file
 * checks only what every codec shares: the codec byte is one it knows, a "dense" payload is a whole
 * number of float32, and the reserved bytes are 0, so a later use of them is a new FRAME_VERSION
 * rather than a silent reinterpretation. The codec byte sits after the old header rather than in the
 * reserved step of direct frames so both layouts read it at one place; 3 reserved bytes keep the
 * payload 4-byte aligned. A version-1 frame is refused by its version byte.
 *
 * Version 3 added the stage byte: a torus plan runs three rings in one attempt (its row's
 * reduce-scatter, its column's all-reduce, its row's all-gather; packages/allreduce/src/torus.ts), and
 * the stage says which ring a chunk belongs to, since step, segment and offset restart in each; stage
 * 3 is the hop to and from a member attached to a row (a contribution up as reduce-scatter frames,
 * the final sums down as all-gather frames, float32, segment 0). A flat ring's frames are stage 0;
 * direct and abort frames must carry 0.
 *
 * Grid plans (protocol 8) run a group ring along each of up to GRID_MAX_DIMS dimensions in one
 * attempt; dimensions 0 and 1 reuse the torus's row and column stages, dimension k ≥ 2 travels stage
 * k + 2 (gridStage), so a torus's frames are a two-dimensional grid's.
 *
 * Kinds: the ring's reduce-scatter (1) and all-gather (2), the abort notice (3), and the direct
 * (BTARD-style) layout's scatter (4: a member's contribution to shard `segment`, sent to the shard's
 * owner) and gather (5: the owner's aggregated shard `segment`, sent to every other member). Direct
 * frames have no schedule steps: their `step` is reserved and must be 0. Direct frames are float32
 * only: their codec is "dense", and any other codec is a FrameDecodeError (a robust owner needs
 * exact contributions).
 *
 * Each layout decodes only its own kinds (plus abort): `decodeFrame` reads ring frames,
 * `decodeDirectFrame` direct ones, and a frame of the other layout is a FrameDecodeError there. A
 * ring peer therefore can never mistake a direct frame for one of its chunks (both share the header
 * and the same round ids), and the types keep the two apart.
 */

import * as v from "valibot";
import type { Codec } from "./job.ts";

export const FRAME_VERSION = 3;
export const FRAME_HEADER_BYTES = 20;
/** Chromium's SCTP stack refuses data-channel messages above 256 KiB (and closes the channel). */
export const SCTP_MESSAGE_LIMIT_BYTES = 256 * 1024;
/** Bytes a transport may put in front of each frame (p2p: the channel id header). */
export const TRANSPORT_HEADER_BYTES = 4;
/** Largest frame, header included: one SCTP message with room for the transport's header. */
export const MAX_FRAME_BYTES = SCTP_MESSAGE_LIMIT_BYTES - TRANSPORT_HEADER_BYTES;

export const FrameKind = {
  ReduceScatter: 1,
  AllGather: 2,
  Abort: 3,
  DirectScatter: 4,
  DirectGather: 5,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/**
 * Which ring of a plan a ring data frame travels: the flat ring's one, a torus's row or column ring,
 * or a grid's group ring along one of its dimensions (gridStage). A torus is the grid of two
 * dimensions, so its row is dimension 0 and its column dimension 1.
 */
export const RingStage = {
  Ring: 0,
  TorusRow: 1,
  TorusColumn: 2,
  /** The hop between a grid member and the member attached to it (a float32 vector each way). */
  TorusAttach: 3,
} as const;
/** Most dimensions a grid plan has: its dimensions 2 and up travel stages 4 .. GRID_MAX_DIMS + 1. */
export const GRID_MAX_DIMS = 12;
type GridDeepStage = 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 12 | 13;
export type RingStage = (typeof RingStage)[keyof typeof RingStage] | GridDeepStage;

/** The stage byte of a grid's group rings along dimension `dim` (0 is a torus's row, 1 its column). */
export function gridStage(dim: number): RingStage {
  if (!Number.isInteger(dim) || dim < 0 || dim >= GRID_MAX_DIMS) throw new RangeError(`grid dimension ${dim} is not in [0, ${GRID_MAX_DIMS})`);
  return (dim < 2 ? dim + 1 : dim + 2) as RingStage;
}

/** The grid dimension a stage byte's ring runs along, or undefined for the flat ring and the attach hop. */
export function gridDimOf(stage: RingStage): number | undefined {
  if (stage === RingStage.TorusRow || stage === RingStage.TorusColumn) return stage - 1;
  return stage >= 4 ? stage - 2 : undefined;
}
const STAGES = new Set<number>([...Object.values(RingStage), ...Array.from({ length: GRID_MAX_DIMS - 2 }, (_, k) => k + 4)]);

/** The codec byte of a data frame. 0 is no codec (abort frames), so a zeroed header is refused. */
export const FRAME_CODEC_IDS: Readonly<Record<Codec, number>> = { dense: 1, fp16: 2, int8: 3, topk: 4 };
const CODEC_BY_ID = new Map<number, Codec>(Object.entries(FRAME_CODEC_IDS).map(([name, id]) => [id, name as Codec]));

/** One chunk of the ring: the payload is the codec's bytes (`dense`: float32 elements). */
export type DataFrame = {
  kind: typeof FrameKind.ReduceScatter | typeof FrameKind.AllGather;
  attempt: number;
  step: number;
  segment: number;
  offset: number;
  codec: Codec;
  /** The ring of the plan this chunk travels (RingStage); step, segment and offset are that ring's. */
  stage: RingStage;
  /** A view into the frame's bytes; copy it if you keep it beyond the handler. */
  payload: Uint8Array;
};

/** The header fields of a ring data frame; `stage` defaults to RingStage.Ring. */
export type DataFrameHeader = Omit<DataFrame, "codec" | "payload" | "stage"> & { stage?: RingStage };

export type AbortFrame = {
  kind: typeof FrameKind.Abort;
  attempt: number;
  /** Peer suspected of causing the abort, and why: propagated so every survivor names the same culprit. */
  suspect: string;
  reason: string;
};

/** A frame of the ring layout, as `decodeFrame` returns it. */
export type Frame = DataFrame | AbortFrame;

/** One chunk of tensor data of the direct layout (always float32): `segment` is the shard index, `step` is always 0. */
export type DirectDataFrame = {
  kind: typeof FrameKind.DirectScatter | typeof FrameKind.DirectGather;
  attempt: number;
  /** Reserved: always 0. */
  step: number;
  /** Shard index (the owner's position in the plan). */
  segment: number;
  /** Element offset inside the shard. */
  offset: number;
  /** A view into the frame's bytes; copy it if you keep it beyond the handler. */
  payload: Float32Array;
};

/** A frame of the direct layout, as `decodeDirectFrame` returns it. */
export type DirectFrame = DirectDataFrame | AbortFrame;

export class FrameDecodeError extends Error {
  override name = "FrameDecodeError";
}

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const CODEC_BYTE = 16;
const STAGE_BYTE = 17;

function checkField(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`frame field ${name}=${value} is not an integer in [0, ${max}]`);
  }
}

type HeaderFields = { kind: FrameKind; attempt: number; step: number; segment: number; offset: number; codecId: number; stage?: number };

/** A zeroed frame of `payloadBytes` with its header written; refuses out-of-range fields and oversize frames. */
function frameWithHeader(fields: HeaderFields, payloadBytes: number): Uint8Array<ArrayBuffer> {
  const { kind, attempt, step, segment, offset, codecId } = fields;
  const stage = fields.stage ?? RingStage.Ring;
  checkField("attempt", attempt, U32_MAX);
  checkField("step", step, U16_MAX);
  checkField("segment", segment, U32_MAX);
  checkField("offset", offset, U32_MAX);
  if (isDirectKind(kind) && step !== 0) throw new RangeError(`direct frame kind ${kind} has no steps: step must be 0, got ${step}`);
  if (!STAGES.has(stage) || (stage !== RingStage.Ring && !isRingKind(kind))) throw new RangeError(`frame kind ${kind} cannot carry stage ${stage}`);
  const bytes = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes);
  if (bytes.byteLength > MAX_FRAME_BYTES) {
    throw new RangeError(`frame of ${bytes.byteLength} bytes exceeds MAX_FRAME_BYTES=${MAX_FRAME_BYTES}`);
  }
  const view = new DataView(bytes.buffer);
  view.setUint8(0, FRAME_VERSION);
  view.setUint8(1, kind);
  view.setUint16(2, step, true);
  view.setUint32(4, attempt, true);
  view.setUint32(8, segment, true);
  view.setUint32(12, offset, true);
  view.setUint8(CODEC_BYTE, codecId);
  view.setUint8(STAGE_BYTE, stage);
  return bytes;
}

/**
 * Encodes a float32 ("dense") data frame of either layout, copying `payload` once into a fresh
 * buffer that the caller may transfer.
 */
export function encodeDataFrame(frame: DataFrameHeader | Omit<DirectDataFrame, "payload">, payload: Float32Array): Uint8Array<ArrayBuffer> {
  const bytes = frameWithHeader({ ...frame, codecId: FRAME_CODEC_IDS.dense }, payload.byteLength);
  new Float32Array(bytes.buffer, FRAME_HEADER_BYTES, payload.length).set(payload);
  return bytes;
}

/**
 * Encodes a ring data frame whose payload is already a codec's bytes (see packages/allreduce
 * codecs), copying them once. A "dense" payload must be a whole number of float32.
 */
export function encodeCodedFrame(frame: DataFrameHeader & { codec: Codec }, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  if (frame.kind !== FrameKind.ReduceScatter && frame.kind !== FrameKind.AllGather) {
    throw new RangeError(`coded frames are ring frames; kind ${String(frame.kind)} is not`);
  }
  const codecId = FRAME_CODEC_IDS[frame.codec] as number | undefined;
  if (codecId === undefined) throw new RangeError(`unknown codec ${String(frame.codec)}`);
  if (frame.codec === "dense" && payload.byteLength % 4 !== 0) throw new RangeError(`a dense payload of ${payload.byteLength} bytes is not a whole number of float32`);
  const bytes = frameWithHeader({ ...frame, codecId }, payload.byteLength);
  bytes.set(payload, FRAME_HEADER_BYTES);
  return bytes;
}

export function encodeAbortFrame(frame: Omit<AbortFrame, "kind">): Uint8Array<ArrayBuffer> {
  const text = asciiJsonBytes({ suspect: frame.suspect, reason: frame.reason });
  if (FRAME_HEADER_BYTES + text.byteLength > MAX_FRAME_BYTES) throw new RangeError("abort frame too large");
  const bytes = frameWithHeader({ kind: FrameKind.Abort, attempt: frame.attempt, step: 0, segment: 0, offset: 0, codecId: 0 }, text.byteLength);
  bytes.set(text, FRAME_HEADER_BYTES);
  return bytes;
}

/**
 * Decodes a ring frame (reduce-scatter, all-gather, abort). Throws FrameDecodeError on anything
 * malformed (an unknown codec included), and on a direct-layout frame; never returns a half-valid
 * frame. Data payloads are views of `bytes` (no copy).
 */
export function decodeFrame(bytes: Uint8Array): Frame {
  const frame = decodeAnyFrame(bytes);
  if (isDirectFrame(frame)) {
    throw new FrameDecodeError(`frame kind ${frame.kind} belongs to the direct layout, not the ring`);
  }
  return frame;
}

/** Decodes a direct-layout frame (scatter, gather, abort); a ring frame is a FrameDecodeError. */
export function decodeDirectFrame(bytes: Uint8Array): DirectFrame {
  const frame = decodeAnyFrame(bytes);
  if (isRingDataFrame(frame)) {
    throw new FrameDecodeError(`frame kind ${frame.kind} belongs to the ring, not the direct layout`);
  }
  return frame;
}

/** Decodes a frame of any kind (for tools and tests; a running round uses its layout's decoder). */
export function decodeAnyFrame(bytes: Uint8Array): Frame | DirectFrame {
  if (bytes.byteLength < FRAME_HEADER_BYTES) {
    throw new FrameDecodeError(`frame of ${bytes.byteLength} bytes is shorter than its ${FRAME_HEADER_BYTES}-byte header`);
  }
  if (bytes.byteLength > MAX_FRAME_BYTES) {
    throw new FrameDecodeError(`frame of ${bytes.byteLength} bytes exceeds MAX_FRAME_BYTES=${MAX_FRAME_BYTES}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(0);
  if (version !== FRAME_VERSION) throw new FrameDecodeError(`frame version ${version}, expected ${FRAME_VERSION}`);
  const kind = view.getUint8(1);
  const step = view.getUint16(2, true);
  const attempt = view.getUint32(4, true);
  const segment = view.getUint32(8, true);
  const offset = view.getUint32(12, true);
  const codecId = view.getUint8(CODEC_BYTE);
  const stage = view.getUint8(STAGE_BYTE);
  if (!STAGES.has(stage)) throw new FrameDecodeError(`frame carries unknown stage ${stage}`);
  if (stage !== RingStage.Ring && !isRingKind(kind)) throw new FrameDecodeError(`frame kind ${kind} carries stage ${stage}; only ring data frames have stages`);
  for (let at = STAGE_BYTE + 1; at < FRAME_HEADER_BYTES; at++) {
    if (view.getUint8(at) !== 0) throw new FrameDecodeError(`reserved header byte ${at} is ${view.getUint8(at)}; it must be 0`);
  }
  const body = bytes.subarray(FRAME_HEADER_BYTES);
  switch (kind) {
    case FrameKind.ReduceScatter:
    case FrameKind.AllGather: {
      const codec = codecOf(codecId, kind);
      if (codec === "dense") checkWholeFloats(body);
      return { kind, attempt, step, segment, offset, codec, stage: stage as RingStage, payload: body };
    }
    case FrameKind.DirectScatter:
    case FrameKind.DirectGather: {
      if (step !== 0) throw new FrameDecodeError(`direct frame kind ${kind} carries step ${step}; the field is reserved and must be 0`);
      const codec = codecOf(codecId, kind);
      if (codec !== "dense") throw new FrameDecodeError(`direct frame kind ${kind} carries codec ${codec}; the direct layout is float32 (dense) only`);
      checkWholeFloats(body);
      return { kind, attempt, step, segment, offset, payload: float32View(body) };
    }
    case FrameKind.Abort:
      if (codecId !== 0) throw new FrameDecodeError(`abort frame carries codec byte ${codecId}; it must be 0`);
      return { kind, attempt, ...decodeAbortBody(body) };
    default:
      throw new FrameDecodeError(`unknown frame kind ${kind}`);
  }
}

function codecOf(codecId: number, kind: number): Codec {
  const codec = CODEC_BY_ID.get(codecId);
  if (codec === undefined) throw new FrameDecodeError(`data frame kind ${kind} carries unknown codec ${codecId}`);
  return codec;
}

function checkWholeFloats(body: Uint8Array): void {
  if (body.byteLength % 4 !== 0) throw new FrameDecodeError(`dense payload of ${body.byteLength} bytes is not a whole number of float32`);
}

/** The payload as float32: a view when it is 4-byte aligned (transports deliver that), else a copy. */
function float32View(body: Uint8Array): Float32Array {
  return body.byteOffset % 4 === 0
    ? new Float32Array(body.buffer, body.byteOffset, body.byteLength / 4)
    : new Float32Array(new Uint8Array(body).buffer); // copy: aligned, and safe for Node Buffers too
}

function isDirectKind(kind: number): boolean {
  return kind === FrameKind.DirectScatter || kind === FrameKind.DirectGather;
}

function isRingKind(kind: number): boolean {
  return kind === FrameKind.ReduceScatter || kind === FrameKind.AllGather;
}

function isDirectFrame(frame: Frame | DirectFrame): frame is DirectDataFrame {
  return isDirectKind(frame.kind);
}

function isRingDataFrame(frame: Frame | DirectFrame): frame is DataFrame {
  return frame.kind === FrameKind.ReduceScatter || frame.kind === FrameKind.AllGather;
}

const AbortBody = v.object({ suspect: v.pipe(v.string(), v.maxLength(256)), reason: v.pipe(v.string(), v.maxLength(4096)) });

function decodeAbortBody(body: Uint8Array): v.InferOutput<typeof AbortBody> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(asciiText(body));
  } catch (error) {
    throw new FrameDecodeError(`abort frame body is not ASCII JSON: ${String(error)}`);
  }
  const result = v.safeParse(AbortBody, parsed);
  if (!result.success) throw new FrameDecodeError(`abort frame body: ${v.summarize(result.issues)}`);
  return result.output;
}

/**
 * JSON with every non-ASCII character \u-escaped, one byte per character. Pure packages have no
 * TextEncoder (no DOM or Node typings), and abort notices are short, so this is all they need.
 */
export function asciiJsonBytes(value: unknown): Uint8Array {
  const json = JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return Uint8Array.from(json, (c) => c.charCodeAt(0));
}

export function asciiText(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) {
    if (byte > 0x7f) throw new FrameDecodeError(`non-ASCII byte ${byte} in abort frame body`);
    text += String.fromCharCode(byte);
  }
  return text;
}
