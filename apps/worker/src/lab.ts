// The lab page: exposes primitives on window.crowdtrainLab for e2e tests and benchmarks.
// Each group lives in src/lab/*.ts; add new ones (all-reduce over packages/p2p) the same way.
import type { CrowdtrainLab } from "./lab-api.ts";
import { arBlast, arBlastDone, arClose, arConnect, arOpen, arListenBlast, arProgress, arRun } from "./lab/allreduce.ts";
import { peerClose, peerConnect, peerOpen, receivePattern, sendPattern } from "./lab/peer.ts";
import { labDishonest, labDishonestStatus } from "./lab/dishonest.ts";
import { labFailing, labFailingStatus } from "./lab/failing.ts";
import { plainPredict } from "./lab/plain-predict.ts";
import { plainTrainTo } from "./lab/plain-train.ts";
import { trainStepBench } from "./lab/train-step.ts";
import { webgpuCheck } from "./lab/webgpu.ts";
import { pipeClose, pipeConnect, pipeOpen, pipeRun } from "./lab/pipeline.ts";

const lab: CrowdtrainLab = {
  webgpuCheck,
  peerOpen,
  peerConnect,
  sendPattern,
  receivePattern,
  peerClose,
  arOpen,
  arConnect,
  arRun,
  arBlast,
  arListenBlast,
  arBlastDone,
  arProgress,
  arClose,
  trainStepBench,
  plainTrainTo,
  plainPredict,
  labDishonest,
  labDishonestStatus,
  labFailing,
  labFailingStatus,
  pipeOpen,
  pipeConnect,
  pipeRun,
  pipeClose,
};

window.crowdtrainLab = lab;
document.querySelector("#status")?.replaceChildren(`ready: ${Object.keys(lab).join(", ")}`);
