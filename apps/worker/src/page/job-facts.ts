// Pure helpers of the volunteer page's job panel: what to show, computed from the server's summary
// and the tab's own status, without touching the DOM (tested in Node).
import { jobProgress, type Job, type Summary } from "@crowdtrain/protocol";

/** The polyline of a sparkline: values scaled into width × height (y grows downwards), NaN skipped. */
export function sparklinePoints(values: readonly number[], width: number, height: number): string {
  const finite = values.map((value, i) => [i, value] as const).filter(([, value]) => Number.isFinite(value));
  if (finite.length < 2) return "";
  const ys = finite.map(([, value]) => value);
  const low = Math.min(...ys);
  const span = Math.max(...ys) - low || 1;
  const last = values.length - 1;
  return finite.map(([i, value]) => `${((i / last) * width).toFixed(1)},${(height - ((value - low) / span) * height).toFixed(1)}`).join(" ");
}

/** "MLP (32 hidden) on mnist, DiLoCo (8 inner steps), int8 all-reduce". */
export function describeJob(job: Job): string {
  const model = job.model.kind === "mlp" ? `MLP (${job.model.hidden.join("-")} hidden)` : `CNN (${job.model.filters.join("-")} filters)`;
  const algorithm = job.algorithm?.kind === "diloco" ? `, DiLoCo (${job.algorithm.innerSteps} inner steps)` : "";
  const codec = job.codec === "dense" ? "" : `, ${job.codec} all-reduce`;
  return `${model} on ${job.dataset}${algorithm}${codec}`;
}

/** The progress line: "round 12 of 60 (20%)", or by epochs, or just the round when open-ended. */
export function describeProgress(summary: Summary): { fraction: number | undefined; text: string } {
  const fraction = jobProgress(summary);
  const rounds = summary.targetRounds === undefined ? `round ${summary.round}` : `round ${summary.round} of ${summary.targetRounds}`;
  const epochs = summary.job.epochs === undefined ? "" : `, epoch ${Math.min(summary.epoch + 1, summary.job.epochs)} of ${summary.job.epochs}`;
  const state = summary.status === "done" ? "finished" : summary.status;
  return { fraction, text: `${state}: ${rounds}${epochs}${fraction === undefined ? "" : ` (${(fraction * 100).toFixed(0)}%)`}` };
}

/** What this tab gave: its committed rounds and their samples, and their share of every sample the job has used. */
export function describeContribution(mine: { roundsDone: number; samplesCommitted: number }, samplesSeen: number | undefined): string {
  const share = samplesSeen !== undefined && samplesSeen > 0 ? ` (${((Math.min(mine.samplesCommitted, samplesSeen) / samplesSeen) * 100).toFixed(1)}% of all ${samplesSeen} samples so far)` : "";
  return `${mine.roundsDone} rounds, ${mine.samplesCommitted} samples${share}`;
}

/**
 * Why this page cannot have WebGPU, when that is the reason: browsers give it only to secure
 * contexts (https, or localhost). The https link is this page's own address with https.
 */
export function insecureNotice(where: { isSecureContext: boolean; href: string }): { text: string; httpsUrl: string } | undefined {
  if (where.isSecureContext) return undefined;
  const url = new URL(where.href);
  url.protocol = "https:";
  return {
    text: "This page is not secure (http://), so your browser turns WebGPU off and this tab trains on WebGL or the CPU, more slowly. If the operator serves HTTPS, open:",
    httpsUrl: url.href,
  };
}
