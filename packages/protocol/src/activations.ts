/**
 * Binary frames for a pipeline's activations: a stage's outputs forward to the next stage, and the
 * loss's gradient with respect to them backward to the stage before. They travel on their own
 * channel ("activations"), never through JSON, one micro-batch tensor cut into frames that each fit
 * one SCTP message. A fixed 32-byte little-endian header, then float32 elements:
 *
 *   offset size field
 *   0      1    version    (ACTIVATION_FRAME_VERSION)
 *   1      1    direction  ACTIVATION_DIRECTION_IDS: 16 forward, 17 backward
 *   2      2    micro      the micro-batch within the round
 *   4      4    attempt    the coordinator's attempt id of the round
 *   8      1    stage      the sending stage
 *   9      1    rank       dimensions of the whole tensor, 1..4 (rows first)
 *   10     2    reserved, must be 0
 *   12     16   dims       4 × u32: the whole tensor's shape, unused dimensions 0
 *   28     4    offset     first element of this frame inside the whole tensor
 *   32     ...  payload    float32 elements
 *
 * The direction ids do not overlap the all-reduce frames' kinds (frames.ts: 1..5), so a frame sent
 * on the wrong channel is refused by its second byte rather than read as something else. This file
 * checks the layout only (version, ids, reserved bytes, the shape's and payload's sizes, the frame
 * inside the tensor); whether a frame is the one a stage expects (its neighbour, its round, its
 * micro-batch's shape, finite values) is the receiver's check (packages/pipeline assembler.ts).
 */

import { FrameDecodeError, MAX_FRAME_BYTES } from "./frames.ts";

export const ACTIVATION_FRAME_VERSION = 1;
export const ACTIVATION_HEADER_BYTES = 32;
export const MAX_ACTIVATION_RANK = 4;

export type ActivationDirection = "forward" | "backward";
export const ACTIVATION_DIRECTION_IDS: Readonly<Record<ActivationDirection, number>> = { forward: 16, backward: 17 };
const DIRECTION_BY_ID = new Map<number, ActivationDirection>(Object.entries(ACTIVATION_DIRECTION_IDS).map(([name, id]) => [id, name as ActivationDirection]));

/** What a frame says about the whole tensor it belongs to. */
export interface ActivationHeader {
  readonly direction: ActivationDirection;
  readonly attempt: number;
  readonly micro: number;
  readonly stage: number;
  /** The whole micro-batch tensor's shape: rows, then the per-sample shape. */
  readonly shape: readonly number[];
}

export interface ActivationFrame extends ActivationHeader {
  /** Element offset of `values` inside the whole tensor. */
  readonly offset: number;
  /** A view into the frame's bytes where aligned; copy it if you keep it beyond the handler. */
  readonly values: Float32Array;
}

const U8_MAX = 0xff;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;
const RANK_BYTE = 9;
const DIMS_AT = 12;
const OFFSET_AT = 28;

function checkField(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`activation frame field ${name}=${value} is not an integer in [0, ${max}]`);
}

/** Elements of a tensor of `shape`; throws on a shape the header cannot carry. */
export function activationElements(shape: readonly number[]): number {
  if (shape.length < 1 || shape.length > MAX_ACTIVATION_RANK) throw new RangeError(`activation shape [${shape.join(", ")}] must have 1 to ${MAX_ACTIVATION_RANK} dimensions`);
  let elements = 1;
  for (const [i, dim] of shape.entries()) {
    checkField(`dims[${i}]`, dim, U32_MAX);
    if (dim === 0) throw new RangeError(`activation shape [${shape.join(", ")}] has an empty dimension`);
    elements *= dim;
  }
  if (elements > U32_MAX) throw new RangeError(`activation shape [${shape.join(", ")}] has more than 2^32 elements`);
  return elements;
}

/** One frame: `values` are the elements at `offset` of the tensor the header describes. */
export function encodeActivationFrame(header: ActivationHeader, offset: number, values: Float32Array): Uint8Array<ArrayBuffer> {
  checkField("attempt", header.attempt, U32_MAX);
  checkField("micro", header.micro, U16_MAX);
  checkField("stage", header.stage, U8_MAX);
  checkField("offset", offset, U32_MAX);
  const elements = activationElements(header.shape);
  if (values.length === 0 || offset + values.length > elements) throw new RangeError(`activation frame of ${values.length} elements at ${offset} is outside a tensor of ${elements}`);
  const bytes = new Uint8Array(ACTIVATION_HEADER_BYTES + values.byteLength);
  if (bytes.byteLength > MAX_FRAME_BYTES) throw new RangeError(`activation frame of ${bytes.byteLength} bytes exceeds MAX_FRAME_BYTES=${MAX_FRAME_BYTES}`);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, ACTIVATION_FRAME_VERSION);
  view.setUint8(1, ACTIVATION_DIRECTION_IDS[header.direction]);
  view.setUint16(2, header.micro, true);
  view.setUint32(4, header.attempt, true);
  view.setUint8(8, header.stage);
  view.setUint8(RANK_BYTE, header.shape.length);
  header.shape.forEach((dim, i) => view.setUint32(DIMS_AT + 4 * i, dim, true));
  view.setUint32(OFFSET_AT, offset, true);
  new Float32Array(bytes.buffer, ACTIVATION_HEADER_BYTES, values.length).set(values);
  return bytes;
}

/**
 * A whole micro-batch tensor as frames of at most `maxFrameBytes`, in offset order. Each frame is
 * a fresh buffer the caller may transfer.
 */
export function encodeActivation(header: ActivationHeader, values: Float32Array, maxFrameBytes: number = MAX_FRAME_BYTES): Uint8Array<ArrayBuffer>[] {
  const elements = activationElements(header.shape);
  if (values.length !== elements) throw new RangeError(`activation of ${values.length} elements does not fill its shape [${header.shape.join(", ")}]`);
  if (maxFrameBytes > MAX_FRAME_BYTES) throw new RangeError(`maxFrameBytes ${maxFrameBytes} exceeds MAX_FRAME_BYTES=${MAX_FRAME_BYTES}`);
  const perFrame = Math.floor((maxFrameBytes - ACTIVATION_HEADER_BYTES) / 4);
  if (perFrame < 1) throw new RangeError(`maxFrameBytes ${maxFrameBytes} leaves no room for an element`);
  const frames: Uint8Array<ArrayBuffer>[] = [];
  for (let offset = 0; offset < elements; offset += perFrame) {
    frames.push(encodeActivationFrame(header, offset, values.subarray(offset, Math.min(elements, offset + perFrame))));
  }
  return frames;
}

/** Decodes one frame; anything malformed is a FrameDecodeError, never a half-valid frame. */
export function decodeActivationFrame(bytes: Uint8Array): ActivationFrame {
  if (bytes.byteLength < ACTIVATION_HEADER_BYTES) throw new FrameDecodeError(`activation frame of ${bytes.byteLength} bytes is shorter than its ${ACTIVATION_HEADER_BYTES}-byte header`);
  if (bytes.byteLength > MAX_FRAME_BYTES) throw new FrameDecodeError(`activation frame of ${bytes.byteLength} bytes exceeds MAX_FRAME_BYTES=${MAX_FRAME_BYTES}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint8(0);
  if (version !== ACTIVATION_FRAME_VERSION) throw new FrameDecodeError(`activation frame version ${version}, expected ${ACTIVATION_FRAME_VERSION}`);
  const direction = DIRECTION_BY_ID.get(view.getUint8(1));
  if (direction === undefined) throw new FrameDecodeError(`activation frame carries unknown direction ${view.getUint8(1)}`);
  const rank = view.getUint8(RANK_BYTE);
  if (rank < 1 || rank > MAX_ACTIVATION_RANK) throw new FrameDecodeError(`activation frame carries rank ${rank}; it must be 1 to ${MAX_ACTIVATION_RANK}`);
  for (const at of [10, 11]) {
    if (view.getUint8(at) !== 0) throw new FrameDecodeError(`reserved header byte ${at} is ${view.getUint8(at)}; it must be 0`);
  }
  const shape: number[] = [];
  for (let i = 0; i < MAX_ACTIVATION_RANK; i++) {
    const dim = view.getUint32(DIMS_AT + 4 * i, true);
    if (i < rank) shape.push(dim);
    else if (dim !== 0) throw new FrameDecodeError(`activation frame of rank ${rank} carries dimension ${i} = ${dim}; unused dimensions must be 0`);
  }
  let elements: number;
  try {
    elements = activationElements(shape);
  } catch (error) {
    throw new FrameDecodeError(`activation frame: ${(error as Error).message}`);
  }
  const offset = view.getUint32(OFFSET_AT, true);
  const body = bytes.subarray(ACTIVATION_HEADER_BYTES);
  if (body.byteLength === 0 || body.byteLength % 4 !== 0) throw new FrameDecodeError(`activation payload of ${body.byteLength} bytes is not a positive whole number of float32`);
  const count = body.byteLength / 4;
  if (offset + count > elements) throw new FrameDecodeError(`activation frame of ${count} elements at ${offset} is outside its tensor of ${elements} ([${shape.join(", ")}])`);
  const values = body.byteOffset % 4 === 0 ? new Float32Array(body.buffer, body.byteOffset, count) : new Float32Array(new Uint8Array(body).buffer);
  return { direction, attempt: view.getUint32(4, true), micro: view.getUint16(2, true), stage: view.getUint8(8), shape, offset, values };
}
