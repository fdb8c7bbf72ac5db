import * as tf from "@tensorflow/tfjs";
import type { EvalPoint, Job } from "@crowdtrain/protocol";
import { buildModel, evaluate, writeWeights, type Dataset, type DatasetManifest, type ModelState } from "@crowdtrain/training";

/**
 * Test-set batches on the server's CPU backend: big enough to amortise, small enough to stay
 * responsive (evaluate yields to the event loop between batches; a batch of 500 CNN rows held it for
 * over 4 s on two loaded cores, and the heartbeat dropped three workers as silent).
 */
const EVAL_BATCH = 100;


/**
 * Evaluates committed states on the held-out split, one at a time, on the TF.js CPU backend.
 * Owns one model; each evaluation writes the state's weights into it.
 */
export class Evaluator {
  private readonly model: tf.LayersModel;
  private running: Promise<unknown> = Promise.resolve();

  constructor(job: Job, manifest: DatasetManifest, private readonly test: Dataset) {
    this.model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
  }

  /** Queued behind any evaluation already running; resolves with its result. */
  evaluate(state: ModelState): Promise<EvalPoint> {
    const next = this.running.then(async () => {
      const started = performance.now();
      writeWeights(this.model, state.weights);
      const result = await evaluate(this.model, this.test, EVAL_BATCH);
      return { round: state.round, accuracy: result.accuracy, loss: result.loss, ms: performance.now() - started };
    });
    // The chain must survive a failed evaluation; the caller still sees the failure through `next`.
    this.running = next.catch(() => undefined);
    return next;
  }

  /** The model with the given weights in TF.js's save format, for download (model.json + weights.bin). */
  async export(state: ModelState): Promise<{ modelJson: object; weights: Uint8Array }> {
    await this.running;
    writeWeights(this.model, state.weights);
    let saved: tf.io.ModelArtifacts | undefined;
    await this.model.save(
      tf.io.withSaveHandler(async (artifacts) => {
        saved = artifacts;
        return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: "JSON" } };
      }),
    );
    if (saved?.weightData === undefined || saved.weightSpecs === undefined) throw new Error("TF.js produced no weights to export");
    const data = saved.weightData;
    const weights = Array.isArray(data) ? concatBuffers(data) : new Uint8Array(data);
    return {
      modelJson: {
        format: "layers-model",
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: "crowdtrain",
        modelTopology: saved.modelTopology,
        weightsManifest: [{ paths: ["weights.bin"], weights: saved.weightSpecs }],
        userDefinedMetadata: { crowdtrainRound: state.round, crowdtrainHash: state.hash },
      },
      weights,
    };
  }

  /** Waits for the evaluation or export in progress (a disposed model would fail it), then frees the model. */
  async close(): Promise<void> {
    await this.running;
    this.model.dispose();
  }
}

function concatBuffers(parts: ArrayBuffer[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, p) => sum + p.byteLength, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(new Uint8Array(part), offset);
    offset += part.byteLength;
  }
  return out;
}
