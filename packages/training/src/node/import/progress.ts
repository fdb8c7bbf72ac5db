/**
 * Progress lines for long imports: at most one every PROGRESS_EVERY_MS, so a million-row CSV prints
 * a handful of lines, not a million. The sink is injected (stderr in the CLI, nothing in tests).
 */
export const PROGRESS_EVERY_MS = 2_000;

export type ProgressSink = (line: string) => void;

/** Returns `tick(done)`; it reports "`what`: done[/total] unit" when enough time has passed. */
export function progress(sink: ProgressSink | undefined, what: string, unit: string, total?: number): (done: number) => void {
  if (sink === undefined) return () => {};
  let last = performance.now();
  return (done) => {
    const now = performance.now();
    if (now - last < PROGRESS_EVERY_MS) return;
    last = now;
    const of = total === undefined ? "" : ` of ${total.toLocaleString("en-US")}`;
    sink(`${what}: ${done.toLocaleString("en-US")}${of} ${unit}`);
  };
}
