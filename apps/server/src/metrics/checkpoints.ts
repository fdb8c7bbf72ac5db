import { Counter, Histogram, type Registry } from "prom-client";
import type { CheckpointWrite } from "../training/checkpointer.ts";
import { METRIC_PREFIX } from "./registry.ts";

/** A checkpoint is a state of up to 64 MiB plus JSON, written to local disk: milliseconds to tens of seconds. */
const WRITE_BUCKETS_S = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** How long checkpoint writes take, and how many fail (a full disk shows here before a restart loses rounds). */
export class CheckpointMetrics {
  private readonly duration: Histogram;
  private readonly failures: Counter;

  constructor(registers: Registry[]) {
    this.duration = new Histogram({
      name: `${METRIC_PREFIX}checkpoint_write_duration_seconds`,
      help: "Wall time of each checkpoint written.",
      buckets: WRITE_BUCKETS_S,
      registers,
    });
    this.failures = new Counter({ name: `${METRIC_PREFIX}checkpoint_failures_total`, help: "Checkpoint writes that failed.", registers });
  }

  onWrite(write: CheckpointWrite): void {
    if (write.ok) this.duration.observe(write.ms / 1000);
    else this.failures.inc();
  }
}
