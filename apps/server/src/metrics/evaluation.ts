import { Gauge, type Registry } from "prom-client";
import type { EvalPoint } from "@crowdtrain/protocol";
import { METRIC_PREFIX } from "./registry.ts";

/**
 * The latest test-set evaluation, read at scrape time from the training metrics (which a resumed
 * checkpoint restores too). NaN until the first evaluation: 0 would read as a model that is
 * always wrong, and an absent sample as a broken scrape.
 */
export function registerEvaluationGauges(registers: Registry[], latest: () => EvalPoint | undefined): void {
  const gauge = (name: string, help: string, pick: (point: EvalPoint) => number): Gauge =>
    new Gauge({
      name: `${METRIC_PREFIX}${name}`,
      help,
      registers,
      collect() {
        const point = latest();
        this.set(point === undefined ? Number.NaN : pick(point));
      },
    });
  gauge("eval_accuracy_ratio", "Test-set accuracy (0..1) of the latest evaluated round.", (p) => p.accuracy);
  gauge("eval_loss", "Test-set loss of the latest evaluated round.", (p) => p.loss);
  gauge("eval_round", "Round number of the latest evaluation.", (p) => p.round);
}
