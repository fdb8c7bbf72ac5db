import type { PeerId } from "./transport.ts";

/**
 * Why an all-reduce failed. Expected failures (a volunteer vanishing) and violations (a bad frame)
 * share one typed error so callers can switch on `code` and always learn whom to suspect.
 *
 * - peer-gone: the transport reported the link to `suspect` closed, or a send to it failed.
 * - timeout:   `suspect` (the left neighbour) sent nothing for progressTimeoutMs, or the round ran
 *              past roundTimeoutMs.
 * - bad-frame: `suspect` sent a frame that is malformed, unexpected, duplicated or not finite.
 * - bad-input: this peer's own gradient or sample count is invalid (suspect is self).
 * - aborted:   another peer aborted the round; `suspect` and `reason` are the ones it named.
 * - closed:    the all-reducer was closed while the round ran.
 * - no-samples: every peer contributed zero samples, so there is no mean to take.
 */
export type AllReduceErrorCode = "peer-gone" | "timeout" | "bad-frame" | "bad-input" | "aborted" | "closed" | "no-samples";

export class AllReduceError extends Error {
  override name = "AllReduceError";
  constructor(
    readonly code: AllReduceErrorCode,
    readonly attempt: number,
    readonly suspect: PeerId | undefined,
    /** What happened, without the attempt and code prefix of `message`. */
    readonly detail: string,
  ) {
    super(`all-reduce attempt ${attempt} failed (${code}${suspect === undefined ? "" : `, suspect ${suspect}`}): ${detail}`);
  }

  /** Plain data, for crossing a page/worker boundary or a log line. */
  toJSON(): { code: AllReduceErrorCode; attempt: number; suspect: PeerId | undefined; message: string } {
    return { code: this.code, attempt: this.attempt, suspect: this.suspect, message: this.message };
  }
}
