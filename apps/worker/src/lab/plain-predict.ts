// The baseline a serving tab is measured against: plain TF.js predict of the job's model in one tab,
// back to back, each call read back before the next (what a tab answering requests one by one, or a
// batch at a time, could do at most), with no server, socket or batching around it.
import { parseJob } from "@crowdtrain/protocol";
import { buildModel, featureBytesOf, predictRows } from "@crowdtrain/training";
import { chooseBackend } from "@crowdtrain/training/browser";
import type { PlainPredictArgs, PlainPredictReport } from "../lab-api.ts";
import { fetchTrainSplit } from "../trainer/dataset-http.ts";

const DATASET_URL = "/data/mnist";
/** Calls before the clock starts: shader compilation and the first upload are not throughput. */
const WARMUP_CALLS = 5;

export async function plainPredict(args: PlainPredictArgs): Promise<PlainPredictReport> {
  const job = parseJob(args.job);
  const choice = await chooseBackend([args.backend]);
  const { manifest, train } = await fetchTrainSplit(DATASET_URL);
  const model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
  const features = featureBytesOf(manifest.inputShape);
  // Real digits, so the inputs are what a client would send.
  const inputs = Float32Array.from(train.features.subarray(0, args.batch * features), (v) => v * train.featureScale);
  try {
    for (let k = 0; k < WARMUP_CALLS; k++) await predictRows(model, inputs, args.batch, manifest.inputShape);
    let calls = 0;
    const started = performance.now();
    while (performance.now() - started < args.seconds * 1000) {
      await predictRows(model, inputs, args.batch, manifest.inputShape);
      calls++;
    }
    const seconds = (performance.now() - started) / 1000;
    return { backend: choice.backend, batch: args.batch, calls, rowsPerSecond: (calls * args.batch) / seconds, msPerCall: (seconds * 1000) / calls };
  } finally {
    model.dispose();
  }
}
