import type { CoordinatorSnapshot } from "@crowdtrain/coordination";
import type { Job } from "@crowdtrain/protocol";
import type { ModelState } from "@crowdtrain/training";
import type { CheckpointStore } from "./checkpoint.ts";
import type { Metrics } from "./metrics.ts";

/** Snapshots kept in memory beyond the checkpoint interval: uploads arrive a little after commits. */
const SNAPSHOT_SLACK = 8;

/** How one checkpoint write went, for /metrics: its wall time whether it was written or failed. */
export type CheckpointWrite = { round: number; ms: number; ok: boolean };

/**
 * Decides when to checkpoint and keeps what a checkpoint of round r needs: the coordinator's
 * snapshot *as of r* (taken at commit time, since by the time r's state is uploaded the coordinator
 * may be a round further) and the samples seen by then. Writes one checkpoint at a time.
 */
export class Checkpointer {
  private readonly snapshots = new Map<number, { snapshot: CoordinatorSnapshot; samplesSeen: number }>();
  private lastWritten: number;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: CheckpointStore,
    private readonly job: Job,
    private readonly everyRounds: number,
    private readonly log: (kind: string, text: string) => void,
    resumedFrom = 0,
    /** Told after every write attempt (the log line says the same in words). */
    private readonly onWrite: (write: CheckpointWrite) => void = () => {},
  ) {
    if (!Number.isInteger(everyRounds) || everyRounds < 1) throw new RangeError(`checkpoint interval must be a positive integer, got ${everyRounds}`);
    this.lastWritten = resumedFrom;
  }

  /**
   * At each commit. Kept: the last SNAPSHOT_SLACK rounds (a flush writes the newest state the server
   * holds, a round or two behind the commits) and the rounds a checkpoint falls on until their
   * state is due. Not every round of the interval: a snapshot holds the epoch's sample queue, and
   * with `--checkpoint-every 100000` they piled up by the hundred (bench:load's heap grew each round).
   */
  remember(round: number, snapshot: CoordinatorSnapshot, samplesSeen: number): void {
    this.snapshots.set(round, { snapshot, samplesSeen });
    for (const r of this.snapshots.keys()) {
      const recent = r >= round - SNAPSHOT_SLACK;
      const due = r % this.everyRounds === 0 && r >= round - this.everyRounds - SNAPSHOT_SLACK;
      if (!recent && !due) this.snapshots.delete(r);
    }
  }

  /** When round `state.round`'s state has arrived: checkpoints every `everyRounds`. */
  onState(state: ModelState, bytes: Uint8Array, metrics: Metrics): void {
    if (state.round % this.everyRounds === 0) void this.write(state, bytes, metrics);
  }

  /** On shutdown: the latest state, if newer than the last checkpoint. Resolves when written. */
  async flush(state: ModelState, bytes: Uint8Array, metrics: Metrics): Promise<void> {
    await this.write(state, bytes, metrics);
  }

  private write(state: ModelState, bytes: Uint8Array, metrics: Metrics): Promise<void> {
    const next = this.writing.then(async () => {
      const remembered = this.snapshots.get(state.round);
      if (state.round <= this.lastWritten) return;
      if (remembered === undefined) {
        this.log("checkpoint", `no checkpoint of round ${state.round}: its coordinator snapshot is no longer kept (more than ${SNAPSHOT_SLACK} rounds behind the commits)`);
        return;
      }
      const started = Date.now();
      try {
        const dir = await this.store.save(
          {
            version: 2,
            job: this.job,
            round: state.round,
            savedAt: started,
            snapshot: remembered.snapshot,
            metrics: {
              rounds: metrics.rounds.filter((r) => r.round <= state.round),
              evals: metrics.evals.filter((e) => e.round <= state.round),
              samplesSeen: remembered.samplesSeen,
            },
          },
          bytes,
        );
        this.lastWritten = state.round;
        const ms = Date.now() - started;
        this.log("checkpoint", `checkpoint of round ${state.round} written to ${dir} in ${ms} ms`);
        this.onWrite({ round: state.round, ms, ok: true });
      } catch (error) {
        this.log("error", `checkpoint of round ${state.round} failed: ${String(error)}`);
        this.onWrite({ round: state.round, ms: Date.now() - started, ok: false });
      }
    });
    this.writing = next;
    return next;
  }
}
