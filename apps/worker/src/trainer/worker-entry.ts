// The dedicated Web Worker that trains: TF.js (WebGPU where the worker has it) off the page's
// thread, so the page stays responsive and a background tab keeps computing.
import { TrainerCore } from "./core.ts";
import { transferablesOf, type TrainerReply, type TrainerRequest } from "./rpc.ts";

const core = new TrainerCore();
/** The slice of DedicatedWorkerGlobalScope used here (the DOM and WebWorker libs cannot be combined). */
type WorkerScope = {
  postMessage(message: TrainerReply, transfer?: Transferable[]): void;
  addEventListener(type: "message", listener: (event: MessageEvent<TrainerRequest>) => void): void;
};
const scope = self as unknown as WorkerScope;

scope.addEventListener("message", (event) => {
  const { id, method, args } = event.data;
  const call = (core[method] as (...a: unknown[]) => Promise<unknown>).apply(core, args);
  call.then(
    (value) => scope.postMessage({ id, ok: true, value } satisfies TrainerReply, transferablesOf(value)),
    (error: unknown) => scope.postMessage({ id, ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) } satisfies TrainerReply),
  );
});
