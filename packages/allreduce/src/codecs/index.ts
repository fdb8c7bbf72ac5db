export { dense } from "./dense.ts";
export { fp16 } from "./fp16.ts";
export { int8 } from "./int8.ts";
export { fromHalfBits, toHalfBits, HALF_MAX } from "./half.ts";
export { CHUNK_CODECS, decodeRingChunk, encodeRingChunk, ringChunkBytes, ringChunkElements, ringSumErrorBound } from "./ring-chunks.ts";
export {
  decodeTopkChunk,
  encodeTopkChunk,
  selectTopk,
  sumBlocks,
  topkChunkCount,
  topkChunkPairs,
  topkCount,
  topkPairsPerChunk,
  topkSumErrorBound,
  TOPK_COUNT_BYTES,
  TOPK_PAIR_BYTES,
  type DecodedTopkChunk,
  type SparseBlock,
} from "./topk.ts";
export { ErrorFeedback } from "./error-feedback.ts";
export { elementBound, FLOAT32_U, type ChunkCodec, type Decoded, type ErrorBound } from "./types.ts";
