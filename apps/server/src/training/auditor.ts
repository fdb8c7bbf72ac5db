import type * as tf from "@tensorflow/tfjs";
import { innerSteps, type Job } from "@crowdtrain/protocol";
import { batchTensors, buildModel, computeGradient, runInnerStepsSync, writeWeights, type Dataset, type DatasetManifest } from "@crowdtrain/training";

/**
 * Recomputes audited leases on the server's TF.js CPU backend: the reference a spot check compares
 * a member's contribution against. One at a time (each blocks the CPU for its lease), on one model
 * it owns; the training split is read on the first audit, so a job without spot checks never holds it.
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
   * Rejects without computing if `wanted` says no when its turn comes.
   */
  recompute(weights: Float32Array, lease: readonly number[], wanted: () => boolean = () => true): Promise<Float32Array> {
    const next = this.running.then(async () => {
      // Asked again when its turn comes: an audit dropped while it waited costs no CPU.
      if (!wanted()) throw new Error("the audit was withdrawn (a rollback or the job's end) before its turn");
      // A failed read is not kept: the next audit tries again.
      const train = await (this.train ??= this.loadTrain().catch((error: unknown) => {
        this.train = undefined;
        throw error;
      }));
      this.model ??= buildModel(this.job.model, this.manifest.inputShape, this.manifest.classes, this.job.seed);
      if (this.job.algorithm.kind === "diloco") {
        const steps = innerSteps(this.job);
        return runInnerStepsSync({ model: this.model, optimizer: this.job.optimizer, train, manifest: this.manifest, start: weights, lease, steps }).pseudoGradient;
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
