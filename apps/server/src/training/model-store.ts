import type { Job } from "@crowdtrain/protocol";
import {
  buildModel,
  createOptimizer,
  encodeState,
  hashState,
  readWeights,
  stateBytes,
  type DatasetManifest,
  type ModelState,
} from "@crowdtrain/training";

/** A joiner asking for a state the uploader has not delivered yet waits at most this long. */
export const STATE_WAIT_TIMEOUT_MS = 20_000;

type Stored = { state: ModelState; bytes: Uint8Array<ArrayBuffer> };
type Waiter = { round: number; resolve: (stored: Stored) => void; timer: NodeJS.Timeout };

/**
 * The committed model state as the server knows it: round 0 is built here from the job's seed, so
 * every worker starts from the same bits; later rounds arrive from each round's uploader, and are
 * adopted once StateUploads checked them against the hash the coordinator committed.
 */
export class ModelStore {
  private latest: Stored;
  private readonly waiters = new Set<Waiter>();

  constructor(
    readonly job: Job,
    readonly manifest: DatasetManifest,
    initial?: ModelState,
  ) {
    const state = initial ?? initialState(job, manifest);
    this.latest = { state, bytes: encodeState(state) };
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
    return stateBytes(this.weightCount, this.job.optimizer.kind);
  }

  /**
   * Adopts a committed state the caller checked (finite, hashes to what the round committed).
   * An older or equal round than the one held is ignored: false.
   */
  adopt(state: ModelState): boolean {
    if (state.round <= this.latest.state.round) return false;
    this.latest = { state, bytes: encodeState(state) };
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
    const optimizer = createOptimizer(job.optimizer, weights.length).state();
    return { round: 0, hash: hashState(weights, optimizer), weights, optimizer };
  } finally {
    model.dispose();
  }
}
