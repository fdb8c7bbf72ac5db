import { FRAME_HEADER_BYTES, MAX_FRAME_BYTES } from "@crowdtrain/protocol";

/**
 * Tunables of one all-reducer. Every peer of a ring must use the same `frameBytes` (the frame cut
 * is part of what a receiver validates); the timeouts are local.
 */
export type AllReduceOptions = {
  /** Payload bytes per data frame (multiple of 4). Header included, a frame never exceeds MAX_FRAME_BYTES. */
  frameBytes: number;
  /** A survivor gives up when its left neighbour sends nothing for this long while data is due. */
  progressTimeoutMs: number;
  /**
   * One hop's allowance, added n times to progressTimeoutMs in a ring of n. A member that starts
   * late hears its left neighbour's last reduce-scatter frame (the ring has started) and then
   * nothing until its own sums have gone round: a gap of min(its lateness, n hops). At 512 members
   * on 35 ms hops and 8 s late, that gap failed every round of a simulated ring with a flat 5 s
   * (packages/sim). 50 ms is a generous one-way WAN hop.
   */
  hopMs: number;
  /**
   * Until this peer has heard from the whole ring (a reduce-scatter frame of the last step has
   * passed through every other member), the gap between frames may be a slower member still
   * computing its gradient, not silence: this longer bound applies then. A member that died is
   * named sooner anyway, by its closed link.
   */
  ringStartTimeoutMs: number;
  /** Hard bound on one round, however slowly it progresses. Must exceed progressTimeoutMs. */
  roundTimeoutMs: number;
  /** Frames of rounds this peer has not started yet (a faster peer ran ahead) are kept up to this many bytes. */
  maxBufferedFutureBytes: number;
};

export const DEFAULT_OPTIONS: AllReduceOptions = {
  frameBytes: 64 * 1024,
  progressTimeoutMs: 5_000,
  hopMs: 50,
  ringStartTimeoutMs: 30_000,
  roundTimeoutMs: 120_000,
  maxBufferedFutureBytes: 64 * 1024 * 1024,
};

export const MAX_FRAME_PAYLOAD_BYTES = MAX_FRAME_BYTES - FRAME_HEADER_BYTES;

export function resolveOptions(overrides: Partial<AllReduceOptions> = {}): AllReduceOptions {
  const options = { ...DEFAULT_OPTIONS, ...overrides };
  const { frameBytes, progressTimeoutMs, ringStartTimeoutMs, roundTimeoutMs, maxBufferedFutureBytes } = options;
  if (!Number.isInteger(frameBytes) || frameBytes < 4 || frameBytes % 4 !== 0 || frameBytes > MAX_FRAME_PAYLOAD_BYTES) {
    throw new RangeError(`frameBytes must be a multiple of 4 in [4, ${MAX_FRAME_PAYLOAD_BYTES}], got ${frameBytes}`);
  }
  if (!(progressTimeoutMs > 0)) throw new RangeError(`progressTimeoutMs must be positive, got ${progressTimeoutMs}`);
  if (!(options.hopMs >= 0)) throw new RangeError(`hopMs must be >= 0, got ${options.hopMs}`);
  if (!(ringStartTimeoutMs >= progressTimeoutMs)) {
    throw new RangeError(`ringStartTimeoutMs (${ringStartTimeoutMs}) must be at least progressTimeoutMs (${progressTimeoutMs})`);
  }
  // A round that may end before its progress timeout could fire would hide a silent peer behind a generic timeout.
  if (!(roundTimeoutMs > ringStartTimeoutMs)) {
    throw new RangeError(`roundTimeoutMs (${roundTimeoutMs}) must exceed ringStartTimeoutMs (${ringStartTimeoutMs})`);
  }
  if (!(maxBufferedFutureBytes >= 0)) throw new RangeError(`maxBufferedFutureBytes must be >= 0, got ${maxBufferedFutureBytes}`);
  return options;
}
