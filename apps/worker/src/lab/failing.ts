// A volunteer whose trainer fails once, as a GPU device lost mid-round does (seen with eight
// SwiftShader tabs: "A valid external Instance reference no longer exists"), for the e2e test of
// starting over with a fresh trainer. The real session, trainer and peer link otherwise. Lab-only.
import * as tf from "@tensorflow/tfjs";
import { startVolunteer, type Volunteer } from "../volunteer.ts";
import type { LabFailingStatus } from "../lab-api.ts";
import { overrideTrainer } from "./override-trainer.ts";

let running: Volunteer | undefined;

/**
 * Joins the job; the `failAtGradient`-th gradient this volunteer computes (over all its trainers)
 * fails. `forcePage`: its trainers run on the page (each fresh one re-selects its backend in this
 * page's TF.js) instead of in a Web Worker each.
 */
export async function labFailing(args: { backends: string[]; failAtGradient: number; name?: string; forcePage?: boolean; loseDevice?: boolean }): Promise<void> {
  if (running !== undefined) throw new Error("a failing volunteer already runs on this page");
  if (args.loseDevice === true && args.forcePage !== true) throw new Error("loseDevice needs forcePage: this page can reach only its own TF.js's device");
  let gradients = 0;
  running = await startVolunteer({
    backends: args.backends,
    forcePage: args.forcePage ?? false,
    name: args.name ?? "failing",
    joinToken: undefined,
    onStatus: () => undefined,
    // Applied to each fresh trainer; the count spans them, so the failure happens once.
    decorateTrainer: (trainer) =>
      overrideTrainer(trainer, {
        computeGradient: async (lease, basis) => {
          if (++gradients === args.failAtGradient) {
            if (args.loseDevice !== true) throw new Error("the GPU device was lost (made up by the lab)");
            // A real loss: the page trainer's own WebGPU device is destroyed under it, and the
            // gradient below fails however TF.js fails on a lost device.
            destroyDevice();
          }
          return trainer.computeGradient(lease, basis);
        },
      }),
  });
}

/** The failing volunteer's status (or undefined before labFailing). */
export function labFailingStatus(): LabFailingStatus | undefined {
  if (running === undefined) return undefined;
  const { phase, peerId, stopReason, lastError, restarts, roundsDone, committed } = running.status();
  return { phase, peerId, stopReason, lastError, restarts, roundsDone, committed };
}

/** Destroys the GPU device of this page's TF.js backend (WebGPU only): GPUDevice.destroy() loses it for good. */
function destroyDevice(): void {
  const backend = tf.backend() as unknown as { device?: { destroy(): void } };
  if (tf.getBackend() !== "webgpu" || backend.device === undefined) throw new Error(`loseDevice needs the page's TF.js on WebGPU, not ${tf.getBackend()}`);
  backend.device.destroy();
}
