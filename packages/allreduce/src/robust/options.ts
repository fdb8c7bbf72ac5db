import { MAX_FRAME_PAYLOAD_BYTES } from "../options.ts";
import { DEFAULT_CLIP_ITERATIONS, DEFAULT_TAU_FACTOR, MAX_CLIP_ITERATIONS } from "./aggregators.ts";

/**
 * Tunables of one direct (robust) all-reducer. `frameBytes` and the aggregation parameters must be
 * the same on every member (a receiver validates the frame cut; every owner should aggregate by the
 * same rule); the timeouts are local.
 *
 * Who waits for whom: member p owns shard p. It waits for every other member's contribution to
 * shard p (contributors), and for every other owner's aggregated shard (owners). An owner can only
 * send its result once its slowest contributor has delivered, so the wait for an owner is the
 * longest, and is ordered after the waits that name a silent contributor (see resolveDirectOptions).
 */
export type DirectOptions = {
  /** Payload bytes per data frame (multiple of 4); header included, a frame never exceeds MAX_FRAME_BYTES. */
  frameBytes: number;
  /**
   * A contributor that has not sent the first frame of its contribution this long after this member
   * started the round is named (`timeout`). Long: a slower member may still be computing its gradient.
   */
  startTimeoutMs: number;
  /** A contributor that started sending and then sends nothing for this long while it still owes chunks is named. */
  progressTimeoutMs: number;
  /**
   * An owner that still owes this member chunks of its aggregated shard and has sent nothing for this
   * long is named. It may be legitimately waiting for its own slowest contributor (up to
   * startTimeoutMs, then progressTimeoutMs of silence), whom it names and aborts the round for
   * everyone; this bound must outlast that so the true culprit is named, not the waiting owner.
   */
  resultTimeoutMs: number;
  /** Hard bound on one round, however slowly it progresses. */
  roundTimeoutMs: number;
  /** Frames of rounds this member has not started yet (a faster peer ran ahead) are kept up to this many bytes. */
  maxBufferedFutureBytes: number;
  /** "trimmed-mean": values dropped at each end per coordinate; undefined = ⌊(N−1)/2⌋ (the coordinate-wise median). */
  trim: number | undefined;
  /** "centered-clip": update rounds from the coordinate-wise median start. */
  clipIterations: number;
  /** "centered-clip": tau = tauFactor × median distance of the contributions to their coordinate-wise median. */
  tauFactor: number;
};

export const DEFAULT_DIRECT_OPTIONS: DirectOptions = {
  frameBytes: 64 * 1024,
  startTimeoutMs: 30_000,
  progressTimeoutMs: 5_000,
  resultTimeoutMs: 40_000,
  roundTimeoutMs: 120_000,
  maxBufferedFutureBytes: 64 * 1024 * 1024,
  trim: undefined,
  clipIterations: DEFAULT_CLIP_ITERATIONS,
  tauFactor: DEFAULT_TAU_FACTOR,
};

export function resolveDirectOptions(overrides: Partial<DirectOptions> = {}): DirectOptions {
  const options = { ...DEFAULT_DIRECT_OPTIONS, ...overrides };
  const { frameBytes, startTimeoutMs, progressTimeoutMs, resultTimeoutMs, roundTimeoutMs, maxBufferedFutureBytes, trim, clipIterations, tauFactor } = options;
  if (!Number.isInteger(frameBytes) || frameBytes < 4 || frameBytes % 4 !== 0 || frameBytes > MAX_FRAME_PAYLOAD_BYTES) {
    throw new RangeError(`frameBytes must be a multiple of 4 in [4, ${MAX_FRAME_PAYLOAD_BYTES}], got ${frameBytes}`);
  }
  if (!(progressTimeoutMs > 0)) throw new RangeError(`progressTimeoutMs must be positive, got ${progressTimeoutMs}`);
  // A contributor's first frame may lag (it is still computing); the gap before it is never shorter than a gap between frames.
  if (!(startTimeoutMs >= progressTimeoutMs)) {
    throw new RangeError(`startTimeoutMs (${startTimeoutMs}) must be at least progressTimeoutMs (${progressTimeoutMs})`);
  }
  // An owner names its silent contributor within startTimeoutMs + progressTimeoutMs of its own start;
  // waiting less for that owner would blame the waiting owner instead of the culprit.
  if (!(resultTimeoutMs > startTimeoutMs + progressTimeoutMs)) {
    throw new RangeError(
      `resultTimeoutMs (${resultTimeoutMs}) must exceed startTimeoutMs + progressTimeoutMs (${startTimeoutMs + progressTimeoutMs})`,
    );
  }
  // The hard bound must not pre-empt the specific timeouts, which name a suspect precisely.
  if (!(roundTimeoutMs > startTimeoutMs + resultTimeoutMs)) {
    throw new RangeError(`roundTimeoutMs (${roundTimeoutMs}) must exceed startTimeoutMs + resultTimeoutMs (${startTimeoutMs + resultTimeoutMs})`);
  }
  if (!(maxBufferedFutureBytes >= 0)) throw new RangeError(`maxBufferedFutureBytes must be >= 0, got ${maxBufferedFutureBytes}`);
  if (trim !== undefined && !(Number.isInteger(trim) && trim >= 0)) throw new RangeError(`trim must be a non-negative integer, got ${trim}`);
  if (!Number.isInteger(clipIterations) || clipIterations < 0 || clipIterations > MAX_CLIP_ITERATIONS) {
    throw new RangeError(`clipIterations must be an integer in [0, ${MAX_CLIP_ITERATIONS}], got ${clipIterations}`);
  }
  if (!(Number.isFinite(tauFactor) && tauFactor > 0)) throw new RangeError(`tauFactor must be a positive finite number, got ${tauFactor}`);
  return options;
}
