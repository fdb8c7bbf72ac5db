import { sha256 } from "@noble/hashes/sha2.js";
import type { OptimizerState } from "./optimizers.ts";

/**
 * SHA-256 of the parts one after another, as lowercase hex: the one primitive every hash here is
 * built on. The default is pure JS (nobleSha256), which runs everywhere; the server passes Node's
 * native one (`nodeSha256` from `@crowdtrain/training/node`), 12x faster on a 4 MiB state measured
 * here (2.5 vs 30 ms), since it hashes every uploaded state. Both give the same hex for the same bytes.
 */
export type Sha256 = (parts: readonly Uint8Array[]) => string;

/** SHA-256 in pure JS (@noble/hashes): Node, workers, and plain-http pages without `crypto.subtle`. */
export const nobleSha256: Sha256 = (parts) => {
  const hash = sha256.create();
  for (const part of parts) hash.update(part);
  return hex(hash.digest());
};

/**
 * The hash a round commits on: SHA-256 over everything a member's next update depends on, the
 * weights and the optimizer state (kind, step, scalars, buffers), in a fixed layout. Cryptographic,
 * so nobody can craft different bits with the committed hash; covering the optimizer state means a
 * state whose momentum was tampered with does not pass either. Pure JS (@noble/hashes), so it runs
 * the same in Node, in workers and on plain-http pages where `crypto.subtle` is missing.
 *
 * Layout: "CTSH1" | kind | u32 step | f64 scalars... | u32 weight count | weights | each buffer,
 * numbers little-endian, floats as their raw bits (so -0 and NaN payloads count).
 */
export function hashState(weights: Float32Array, optimizer: OptimizerState, sha: Sha256 = nobleSha256): string {
  const header = new DataView(new ArrayBuffer(8 + 4 + 4 + 8 * optimizer.scalars.length + 4 + 4));
  for (const [k, ch] of [..."CTSH1"].entries()) header.setUint8(k, ch.charCodeAt(0));
  header.setUint8(5, optimizer.kind === "sgd" ? 1 : 2);
  let at = 8;
  header.setUint32(at, optimizer.step, true);
  header.setUint32((at += 4), optimizer.scalars.length, true);
  at += 4;
  for (const scalar of optimizer.scalars) {
    header.setFloat64(at, scalar, true);
    at += 8;
  }
  header.setUint32(at, weights.length, true);
  header.setUint32(at + 4, optimizer.buffers.length, true);
  return sha([new Uint8Array(header.buffer), bytesOf(weights), ...optimizer.buffers.map(bytesOf)]);
}

/** The float32 words as bytes, in platform order (little-endian on every target we run on). */
function bytesOf(floats: Float32Array): Uint8Array {
  return new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

/**
 * The digest a member commits to before the all-reduce: SHA-256 of its contribution's float32
 * words (little-endian). A spot check later hashes what the member uploads and compares.
 */
export function contributionDigest(gradient: Float32Array, sha: Sha256 = nobleSha256): string {
  return sha([bytesOf(gradient)]);
}

/**
 * A pipeline job's hashes (parallelism.stages above 1). No tab holds the whole model there, so the
 * round's hash is built from each layer's: `layerHashes` hashes every layer's slice of a state (its
 * weights and optimizer buffers, with the optimizer's kind, step and scalars) in layer order, and
 * `combineLayerHashes` hashes those hashes. A stage reports its layers' hashes; the coordinator
 * combines all stages'; a tab holding the whole state computes the same value, whatever the cut.
 * `layerParams` are the state's layers' weight counts (training layers.ts), summing to its length.
 */
export function layerHashes(weights: Float32Array, optimizer: OptimizerState, layerParams: readonly number[], sha: Sha256 = nobleSha256): string[] {
  const total = layerParams.reduce((sum, n) => sum + n, 0);
  if (total !== weights.length) throw new RangeError(`layers of ${total} weights in all do not cover a state of ${weights.length}`);
  let at = 0;
  return layerParams.map((n) => {
    const slice = (values: Float32Array): Float32Array => values.subarray(at, at + n);
    const hash = hashState(slice(weights), { ...optimizer, buffers: optimizer.buffers.map(slice) }, sha);
    at += n;
    return hash;
  });
}

export function combineLayerHashes(hashes: readonly string[], sha: Sha256 = nobleSha256): string {
  const encoder = new TextEncoder();
  return sha([encoder.encode(`CTLH1:${hashes.length}:`), ...hashes.map((layer) => encoder.encode(layer))]);
}

/** The committed hash of a pipeline job's whole state: its layers' hashes, combined. */
export function pipelineStateHash(weights: Float32Array, optimizer: OptimizerState, layerParams: readonly number[], sha: Sha256 = nobleSha256): string {
  return combineLayerHashes(layerHashes(weights, optimizer, layerParams, sha), sha);
}

/** How a job's states are hashed (their header's hash, the hash rounds commit on). */
export type StateHasher = (weights: Float32Array, optimizer: OptimizerState) => string;

/**
 * A job's state hasher: hashState, or for a pipeline job (stages above 1) the layered hash of the
 * layers whose weight counts are `layerParams` (all of them for the whole state, a stage's for its part).
 */
export function stateHasher(stages: number, layerParams: readonly number[], sha: Sha256 = nobleSha256): StateHasher {
  return stages > 1 ? (weights, optimizer) => pipelineStateHash(weights, optimizer, layerParams, sha) : (weights, optimizer) => hashState(weights, optimizer, sha);
}
