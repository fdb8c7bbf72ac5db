import type { Trainer } from "./api.ts";
import { transferablesOf, type TrainerMethod, type TrainerReply, type TrainerRequest } from "./rpc.ts";

/** One trainer call (init loads the dataset; a gradient on SwiftShader takes seconds at most). */
const TRAINER_CALL_TIMEOUT_MS = 120_000;
/** Disposing: a worker that does not answer by then (stuck on a lost device) is terminated anyway. */
const DISPOSE_TIMEOUT_MS = 5_000;

type Waiting = { resolve: (value: unknown) => void; reject: (error: Error) => void; timer: ReturnType<typeof setTimeout> };

/** The Trainer API over postMessage to worker-entry.ts; owns the Worker and terminates it on dispose. */
export function createWorkerTrainer(): Trainer {
  const worker = new Worker(new URL("./worker-entry.ts", import.meta.url), { type: "module", name: "crowdtrain-trainer" });
  const waiting = new Map<number, Waiting>();
  let nextId = 1;
  const failAll = (error: Error): void => {
    for (const w of waiting.values()) {
      clearTimeout(w.timer);
      w.reject(error);
    }
    waiting.clear();
  };
  worker.addEventListener("message", (event: MessageEvent<TrainerReply>) => {
    const reply = event.data;
    const w = waiting.get(reply.id);
    if (w === undefined) return;
    waiting.delete(reply.id);
    clearTimeout(w.timer);
    if (reply.ok) w.resolve(reply.value);
    else w.reject(new Error(`trainer: ${reply.error}`));
  });
  worker.addEventListener("error", (event) => failAll(new Error(`trainer worker crashed: ${event.message}`)));

  const callWithin = <T>(timeoutMs: number, method: TrainerMethod, ...args: unknown[]): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`trainer ${method} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, { resolve: resolve as (value: unknown) => void, reject, timer });
      worker.postMessage({ id, method, args } satisfies TrainerRequest, transferablesOf(args));
    });
  const call = <T>(method: TrainerMethod, ...args: unknown[]): Promise<T> => callWithin<T>(TRAINER_CALL_TIMEOUT_MS, method, ...args);

  return {
    selectBackend: (backends) => call("selectBackend", backends),
    init: (init) => call("init", init),
    loadState: (bytes) => call("loadState", bytes),
    computeGradient: (lease, basis) => call("computeGradient", lease, basis),
    computeStage: (task, port) => call("computeStage", task, port),
    applyUpdate: (attempt, mean) => call("applyUpdate", attempt, mean),
    commit: (attempt, round, hash) => call("commit", attempt, round, hash),
    discard: (attempt) => call("discard", attempt),
    exportState: () => call("exportState"),
    exportPending: (attempt, round) => call("exportPending", attempt, round),
    predict: (inputs, rows) => call("predict", inputs, rows),
    async dispose() {
      try {
        await callWithin(DISPOSE_TIMEOUT_MS, "dispose");
      } finally {
        failAll(new Error("trainer disposed"));
        worker.terminate();
      }
    },
  };
}
