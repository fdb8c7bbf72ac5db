import { encodeAbortFrame } from "@crowdtrain/protocol";
import type { AllReduceErrorCode } from "./errors.ts";
import type { PeerId, Transport } from "./transport.ts";

/** Counters of frames that did not belong to a running round, for diagnosis and tests. */
export type AllReducerCounters = {
  staleFrames: number;
  undecodableFrames: number;
  bufferedFutureBytes: number;
  lastViolation: string | undefined;
};

/** One attempt of some all-reduce layout (ring, direct) as the host drives it. */
export interface HostedRun<F, R> {
  readonly attempt: number;
  readonly result: Promise<R>;
  start(): void;
  handleFrame(from: PeerId, frame: F, bytes: number): void;
  handlePeerViolation(from: PeerId, problem: string): void;
  handlePeerGone(peer: PeerId, reason: string): void;
  abortLocally(code: AllReduceErrorCode, suspect: PeerId | undefined, message: string, notifyPeers: boolean): void;
}

export type RoundHostDeps<F> = {
  transport: Transport;
  /** Decodes a frame of this layout; throws on anything else (another layout's frame, junk). */
  decode: (bytes: Uint8Array) => F & { attempt: number };
  maxBufferedFutureBytes: number;
  /** Names the layout in errors ("all-reducer", "direct all-reducer"). */
  name: string;
};

type Held<F> = { from: PeerId; frame: F; bytes: number };

export interface RoundHost<F, R> {
  /**
   * Runs `run` as the one round in progress: checks its id is above every earlier one, replays the
   * frames held for it, and resolves or rejects with its result. `inputProblem`, if any, fails it
   * at once with "bad-input" naming this peer (its own gradient is refused).
   */
  run(run: HostedRun<F, R>, inputProblem: string | undefined): Promise<R>;
  /** Throws unless a round with this id could start now (the caller checks before building it). */
  checkCanStart(attempt: number): void;
  counters(): AllReducerCounters;
  abortRound(attempt: number, reason: string): void;
  close(): void;
}

/**
 * What every all-reduce layout shares: one transport subscription for many rounds, one at a time.
 * Frames are routed by round id: the running round gets them, older rounds' frames are dropped and
 * counted (a round that was aborted or already finished), and frames of later rounds, sent by a peer
 * that ran ahead, are held up to maxBufferedFutureBytes until this peer starts that round. The layout
 * (round.ts for the ring, robust/direct.ts) owns everything inside a round.
 */
export function createRoundHost<F, R>(deps: RoundHostDeps<F>): RoundHost<F, R> {
  const { transport } = deps;
  let current: HostedRun<F, R> | undefined;
  let lastStarted = -1;
  let closed = false;
  const held = new Map<number, Held<F>[]>();
  /** Rounds whose held frames overflowed the buffer: the sender is named when the round starts. */
  const overflowed = new Map<number, PeerId>();
  const counters: AllReducerCounters = { staleFrames: 0, undecodableFrames: 0, bufferedFutureBytes: 0, lastViolation: undefined };

  const hold = (from: PeerId, bytes: Uint8Array, attempt: number): void => {
    if (counters.bufferedFutureBytes + bytes.byteLength > deps.maxBufferedFutureBytes) {
      if (!overflowed.has(attempt)) overflowed.set(attempt, from);
      counters.lastViolation = `${from} sent more than maxBufferedFutureBytes ahead of attempt ${attempt}`;
      return;
    }
    // The transport reuses its bytes after the handler returns: keep a copy, decoded from the copy.
    const copy = new Uint8Array(bytes); // a copy (Buffer#slice would be a view)
    const list = held.get(attempt) ?? [];
    list.push({ from, frame: deps.decode(copy), bytes: copy.byteLength });
    held.set(attempt, list);
    counters.bufferedFutureBytes += copy.byteLength;
  };

  const dropHeldUpTo = (attempt: number): void => {
    for (const [r, list] of held) {
      if (r > attempt) continue;
      for (const item of list) counters.bufferedFutureBytes -= item.bytes;
      held.delete(r);
    }
    for (const r of overflowed.keys()) if (r <= attempt) overflowed.delete(r);
  };

  const offFrame = transport.onFrame((from, bytes) => {
    let frame: F & { attempt: number };
    try {
      frame = deps.decode(bytes);
    } catch (error) {
      // Malformed, or another layout's frame: counted; if it came from a member of the running
      // round, that round fails naming it (the round ignores strangers).
      counters.undecodableFrames++;
      counters.lastViolation = `undecodable frame from ${from}: ${String(error)}`;
      current?.handlePeerViolation(from, `undecodable frame: ${String(error)}`);
      return;
    }
    if (current !== undefined && frame.attempt === current.attempt) current.handleFrame(from, frame, bytes.byteLength);
    else if (frame.attempt > lastStarted) hold(from, bytes, frame.attempt);
    else counters.staleFrames++;
  });
  const offGone = transport.onPeerGone((peer, reason) => current?.handlePeerGone(peer, reason));

  const checkCanStart = (attempt: number): void => {
    if (closed) throw new Error(`${deps.name} is closed`);
    if (current !== undefined) throw new Error(`attempt ${current.attempt} is still running; attempts run one at a time`);
    if (!Number.isInteger(attempt) || attempt <= lastStarted || attempt > 0xffffffff) {
      throw new RangeError(`attempt id ${attempt} must be an integer above the last one started (${lastStarted})`);
    }
  };

  return {
    checkCanStart,
    async run(run, inputProblem) {
      checkCanStart(run.attempt);
      lastStarted = run.attempt;
      current = run;
      if (inputProblem !== undefined) run.abortLocally("bad-input", transport.self, inputProblem, true);
      else {
        run.start();
        const culprit = overflowed.get(run.attempt);
        if (culprit !== undefined) run.handlePeerViolation(culprit, "sent more frames ahead of this round than maxBufferedFutureBytes");
        for (const item of held.get(run.attempt) ?? []) run.handleFrame(item.from, item.frame, item.bytes);
      }
      dropHeldUpTo(run.attempt);
      try {
        return await run.result;
      } finally {
        current = undefined;
      }
    },
    counters: () => ({ ...counters }),
    abortRound(attempt, reason) {
      if (current?.attempt === attempt) current.abortLocally("aborted", undefined, reason, false);
      // A round not started yet must not start later: mark it as passed so its frames are stale.
      else if (attempt > lastStarted) {
        lastStarted = attempt;
        dropHeldUpTo(attempt);
      }
    },
    close() {
      if (closed) return;
      closed = true;
      offFrame();
      offGone();
      current?.abortLocally("closed", undefined, `the ${deps.name} was closed`, true);
      dropHeldUpTo(Number.POSITIVE_INFINITY);
    },
  };
}

/**
 * Tells `peers` (but `skip` and this peer) that an attempt failed, and whom it suspects: each layout
 * picks whom (ring neighbours, a torus's row and column, every member of a direct plan). A send that
 * fails is recorded in `failures`, not thrown: the peer is usually the one that died.
 */
export function sendAborts(transport: Transport, notice: { attempt: number; suspect: PeerId | undefined; reason: string }, peers: Iterable<PeerId>, skip: PeerId | undefined, failures: string[]): void {
  const abort = encodeAbortFrame({ attempt: notice.attempt, suspect: notice.suspect ?? "", reason: notice.reason });
  for (const peer of new Set(peers)) {
    if (peer === skip || peer === transport.self) continue;
    transport.send(peer, abort).catch((error: unknown) => failures.push(`abort to ${peer}: ${String(error)}`));
  }
}
