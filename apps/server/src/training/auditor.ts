import type * as tf from "@tensorflow/tfjs";
import { innerSteps, type Job } from "@crowdtrain/protocol";
import { setImmediate as nextTurn } from "node:timers/promises";
import { batchTensors, buildModel, computeGradient, runInnerStepsPaced, writeWeights, type Dataset, type DatasetManifest } from "@crowdtrain/training";

/** Why a recomputation stopped: its audit was dropped (a rollback, the job's end) before or while it ran. */
export const AUDIT_WITHDRAWN = "the audit was withdrawn (a rollback or the job's end)";

/**
 * Recomputes audited leases on the server's TF.js CPU backend: the reference a spot check compares
 * a member's contribution against. One at a time, on one model it owns; the training split is read
 * on the first audit, so a job without spot checks never holds it. A DiLoCo lease is replayed one
 * inner step at a time with the event loop handed back in between (H = 512 steps all at once held
 * the coordinator for seconds), and stops at the next step once its audit is withdrawn. A sync lease
 * is one gradient (a member's share of one batch): it runs at once.
 */
export class Auditor {
  private model: tf.LayersModel | undefined;
  private train: Promise<Dataset> | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly job: Job,
    private readonly manifest: DatasetManifest,
    private readonly loadTrain: () => Promise<Dataset>,
  ) {}

  /**
   * The lease's contribution from `weights`, as an honest member computes it: the mean gradient
   * ("sync"), or the pseudo-gradient of the inner steps with a fresh inner optimizer ("diloco").
   * Rejects without computing if `wanted` says no when its turn comes (or, for DiLoCo, at any step).
   */
  recompute(weights: Float32Array, lease: readonly number[], wanted: () => boolean = () => true): Promise<Float32Array> {
    const next = this.running.then(async () => {
      // Asked again when its turn comes: an audit dropped while it waited costs no CPU.
      if (!wanted()) throw new Error(`${AUDIT_WITHDRAWN} before its turn`);
      // A failed read is not kept: the next audit tries again.
      const train = await (this.train ??= this.loadTrain().catch((error: unknown) => {
        this.train = undefined;
        throw error;
      }));
      this.model ??= buildModel(this.job.model, this.manifest.inputShape, this.manifest.classes, this.job.seed);
      if (this.job.algorithm.kind === "diloco") {
        const steps = innerSteps(this.job);
        const pause = async (): Promise<void> => {
          await nextTurn();
          if (!wanted()) throw new Error(`${AUDIT_WITHDRAWN} while it was recomputed`);
        };
        return (await runInnerStepsPaced({ model: this.model, optimizer: this.job.optimizer, train, manifest: this.manifest, start: weights, lease, steps }, pause)).pseudoGradient;
      }
      writeWeights(this.model, weights);
      const { xs, ys } = batchTensors(train, lease, this.manifest.inputShape, this.manifest.classes);
      try {
        return computeGradient(this.model, xs, ys).gradient;
      } finally {
        xs.dispose();
        ys.dispose();
      }
    });
    // A failed recomputation must not stop the next; the caller still sees its failure.
    this.running = next.catch(() => undefined);
    return next;
  }

  /** Waits for the recomputation in progress (a disposed model would fail it), then frees the model. */
  async close(): Promise<void> {
    await this.running;
    this.model?.dispose();
    this.model = undefined;
  }
}
