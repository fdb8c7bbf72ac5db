import type { BackendReport, Trainer } from "./api.ts";
import { TrainerCore } from "./core.ts";
import { createWorkerTrainer } from "./worker-client.ts";

export type ChosenTrainer = { trainer: Trainer; report: BackendReport; where: "worker" | "page"; why: string };

/**
 * Trains in a dedicated Web Worker when it gets the best backend there; if the page could use
 * WebGPU but the worker cannot, trains on the page instead (slower UI, faster maths).
 */
export async function chooseTrainer(backends: string[], forcePage: boolean): Promise<ChosenTrainer> {
  if (!forcePage) {
    const worker = createWorkerTrainer();
    try {
      const report = await worker.selectBackend(backends);
      const pageHasGpu = "gpu" in navigator && navigator.gpu !== undefined;
      if (report.backend === "webgpu" || !backends.includes("webgpu") || !pageHasGpu) {
        return { trainer: worker, report, where: "worker", why: "training in a Web Worker: the page stays responsive" };
      }
      await worker.dispose();
    } catch (error) {
      await worker.dispose().catch((disposeError: unknown) => console.error("disposing the failed worker trainer:", disposeError));
      console.error("Web Worker trainer unavailable, training on the page:", error);
    }
  }
  const page = new TrainerCore();
  const report = await page.selectBackend(backends);
  return { trainer: page, report, where: "page", why: forcePage ? "training on the page (asked for)" : "WebGPU is not available inside a Web Worker here: training on the page" };
}
