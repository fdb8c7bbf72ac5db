import type { Trainer } from "../trainer/api.ts";

/**
 * `trainer` with some methods replaced (the lab's dishonest and failing volunteers). Every other
 * method is delegated by a call, not copied: a page trainer is a class instance whose methods live
 * on its prototype, which a spread would drop.
 */
export function overrideTrainer(trainer: Trainer, overrides: Partial<Trainer>): Trainer {
  return {
    selectBackend: (backends) => trainer.selectBackend(backends),
    init: (init) => trainer.init(init),
    loadState: (bytes) => trainer.loadState(bytes),
    computeGradient: (lease, basis) => trainer.computeGradient(lease, basis),
    computeStage: (task, port) => trainer.computeStage(task, port),
    applyUpdate: (attempt, mean) => trainer.applyUpdate(attempt, mean),
    commit: (attempt, round, hash) => trainer.commit(attempt, round, hash),
    discard: (attempt) => trainer.discard(attempt),
    exportState: () => trainer.exportState(),
    exportPending: (attempt, round) => trainer.exportPending(attempt, round),
    predict: (inputs, rows) => trainer.predict(inputs, rows),
    dispose: () => trainer.dispose(),
    ...overrides,
  };
}
