import { committedOptimizer, type Job } from "@crowdtrain/protocol";
import {
  buildModel,
  createOptimizer,
  encodeState,
  jobStateHasher,
  readWeights,
  stateBytes,
  type DatasetManifest,
  type ModelState,
} from "@crowdtrain/training";
import { nodeSha256 } from "@crowdtrain/training/node";

/** A joiner asking for a state the uploader has not delivered yet waits at most this long. */
export const STATE_WAIT_TIMEOUT_MS = 20_000;

type Stored = { state: ModelState; bytes: Uint8Array<ArrayBuffer> };
type Waiter = { round: number; resolve: (stored: Stored) => void; timer: NodeJS.Timeout };

/**
 * The committed model state as the server knows it: round 0 is built here from the job's seed, so
 * every worker starts from the same bits; later rounds arrive from each round's uploader, and are
 * adopted once StateUploads checked them against the hash the coordinator committed. The last
 * `historyRounds` states are kept (decoded only, the newest also encoded for serving): spot checks
 * recompute a round from the state it started from, and a failed one rolls back to an older state.
 */
export class ModelStore {
  private latest: Stored;
  private readonly waiters = new Set<Waiter>();
  /** Adopted states by round, oldest first (Map keeps insertion order, and rounds only grow). */
  private readonly history = new Map<number, ModelState>();

  constructor(
    readonly job: Job,
    readonly manifest: DatasetManifest,
    initial?: ModelState,
    private readonly historyRounds = 32,
  ) {
    const state = initial ?? initialState(job, manifest);
    this.latest = { state, bytes: encodeState(state) };
    this.history.set(state.round, state);
  }

  get round(): number {
    return this.latest.state.round;
  }

  get state(): ModelState {
    return this.latest.state;
  }

  get bytes(): Uint8Array<ArrayBuffer> {
    return this.latest.bytes;
  }

  /** Weights of the job's model: every accepted state has exactly this many. */
  get weightCount(): number {
    return this.latest.state.weights.length;
  }

  /** The largest encoded state of this job: its floats exactly, plus the largest header allowed. */
  get maxStateBytes(): number {
    return stateBytes(this.weightCount, committedOptimizer(this.job).kind);
  }

  /**
   * Adopts a committed state the caller checked (finite, hashes to what the round committed).
   * An older or equal round than the one held is ignored: false.
   */
  adopt(state: ModelState): boolean {
    if (state.round <= this.latest.state.round) return false;
    this.latest = { state, bytes: encodeState(state) };
    this.history.set(state.round, state);
    for (const round of this.history.keys()) {
      if (this.history.size <= this.historyRounds) break;
      this.history.delete(round);
    }
    for (const waiter of this.waiters) {
      if (waiter.round <= state.round) {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        waiter.resolve(this.latest);
      }
    }
    return true;
  }

  /** The latest state if it is at least `round`, else waits for an upload (bounded). */
  whenAtLeast(round: number, timeoutMs = STATE_WAIT_TIMEOUT_MS): Promise<Stored | undefined> {
    if (this.latest.state.round >= round) return Promise.resolve(this.latest);
    return new Promise((resolve) => {
      const waiter: Waiter = {
        round,
        resolve,
        timer: setTimeout(() => {
          this.waiters.delete(waiter);
          resolve(undefined);
        }, timeoutMs),
      };
      this.waiters.add(waiter);
    });
  }

  /** A kept state of `round` (the newest `historyRounds` adopted ones), if the server has it. */
  stateAt(round: number): ModelState | undefined {
    return this.history.get(round);
  }

  /**
   * A failed spot check undid rounds `to`+1..: the state of round `to` is committed again as
   * `round` (same weights, same hash), and the undone states are dropped so they are never served.
   * Returns the adopted state, or undefined when `to` is no longer kept.
   */
  rollBack(round: number, to: number): ModelState | undefined {
    const target = this.history.get(to);
    if (target === undefined) return undefined;
    for (const kept of [...this.history.keys()]) if (kept > to) this.history.delete(kept);
    const state = { ...target, round };
    return this.adopt(state) ? state : undefined;
  }

  close(): void {
    for (const waiter of this.waiters) clearTimeout(waiter.timer);
    this.waiters.clear();
  }
}

/** Round 0: the job's model initialised from its seed on the CPU backend, fresh optimizer state. */
export function initialState(job: Job, manifest: DatasetManifest): ModelState {
  const model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
  try {
    const weights = readWeights(model);
    const optimizer = createOptimizer(committedOptimizer(job), weights.length).state();
    return { round: 0, hash: jobStateHasher(job, manifest.inputShape, manifest.classes, nodeSha256)(weights, optimizer), weights, optimizer };
  } finally {
    model.dispose();
  }
}
