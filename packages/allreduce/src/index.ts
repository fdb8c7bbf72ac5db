export { createAllReducer, type AllReducer, type AllReducerCounters, type AllReducerDeps } from "./allreducer.ts";
export { AllReduceError, type AllReduceErrorCode } from "./errors.ts";
export { DEFAULT_OPTIONS, MAX_FRAME_PAYLOAD_BYTES, resolveOptions, type AllReduceOptions } from "./options.ts";
export { chunkCount, chunkOffsets, partition, type Span } from "./partition.ts";
export { receiveSegment, sendSegment, stepsPerPhase, type Phase } from "./schedule.ts";
export type { RoundArgs, RoundResult, RoundStats } from "./round.ts";
export type { TorusRoundArgs } from "./torus.ts";
export type { GridRoundArgs } from "./grid.ts";
export { MAX_SAMPLES } from "./reduce.ts";
export * from "./codecs/index.ts";
export { systemClock, type Clock, type TimerHandle } from "./clock.ts";
export type { PeerId, Transport } from "./transport.ts";
export {
  centeredClip,
  coordinateMedian,
  defaultTrim,
  trimmedMean,
  unweightedMean,
  DEFAULT_CLIP_ITERATIONS,
  DEFAULT_TAU_FACTOR,
  MAX_CLIP_ITERATIONS,
  type Aggregate,
  type CenteredClipOptions,
  type ContributorStat,
} from "./robust/aggregators.ts";
export {
  createDirectAllReducer,
  type ContributorReport,
  type DirectAllReducer,
  type DirectAllReducerDeps,
  type DirectRoundArgs,
  type DirectRoundResult,
  type DirectRoundStats,
  type OwnShardReport,
} from "./robust/direct.ts";
export { DEFAULT_DIRECT_OPTIONS, resolveDirectOptions, type DirectOptions } from "./robust/options.ts";
