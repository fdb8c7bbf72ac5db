export { createAllReducer, type AllReducer, type AllReducerCounters, type AllReducerDeps } from "./allreducer.ts";
export { AllReduceError, type AllReduceErrorCode } from "./errors.ts";
export { DEFAULT_OPTIONS, MAX_FRAME_PAYLOAD_BYTES, resolveOptions, type AllReduceOptions } from "./options.ts";
export { chunkCount, chunkOffsets, partition, type Span } from "./partition.ts";
export { receiveSegment, sendSegment, stepsPerPhase, type Phase } from "./schedule.ts";
export type { RoundArgs, RoundResult, RoundStats } from "./round.ts";
export { systemClock, type Clock, type TimerHandle } from "./clock.ts";
export type { PeerId, Transport } from "./transport.ts";
