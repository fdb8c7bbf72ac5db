// Numbers as the dashboard shows them. Pure; every function returns plain text (never markup).
import type { Job, PeerStatus } from "@crowdtrain/protocol";

const DASH = "–";

/** 1234 -> "1,234". */
export function formatCount(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : DASH;
}

/** Bytes in SI units: "0 B", "999 B", "1.50 kB", "12.3 MB". */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return DASH;
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 999.5 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  if (unit === 0) return `${Math.round(value)} B`;
  return `${value.toPrecision(3)} ${units[unit]}`;
}

export function formatRate(bytesPerSecond: number | undefined): string {
  return bytesPerSecond === undefined ? DASH : `${formatBytes(bytesPerSecond)}/s`;
}

/** "850 ms", "12.3 s", "4 min 05 s", "2 h 10 min". */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return DASH;
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1_000;
  if (seconds < 59.95) return `${seconds < 9.95 ? seconds.toFixed(1) : Math.round(seconds)} s`;
  const totalSeconds = Math.round(seconds);
  const minutes = Math.floor(totalSeconds / 60);
  if (minutes < 60) return `${minutes} min ${String(totalSeconds % 60).padStart(2, "0")} s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return `${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** 0.4567 -> "45.7%". */
export function formatPercent(fraction: number, digits = 1): string {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(digits)}%` : DASH;
}

export function formatLoss(loss: number): string {
  if (!Number.isFinite(loss)) return "NaN";
  return loss >= 100 ? loss.toFixed(0) : loss.toPrecision(4);
}

/** A relative error (or tolerance) in scientific notation, "1.2e-7": they span many orders of magnitude. */
export function formatRelativeError(error: number | undefined): string {
  if (error === undefined || !Number.isFinite(error)) return DASH;
  return error === 0 ? "0" : error.toExponential(1);
}

/** A peer's spot checks, "3 ✓ · 1 ✗"; a dash when it has none, so unaudited peers stay quiet. */
export function formatAuditCounts(audits: PeerStatus["audits"]): string {
  if (audits === undefined || audits.passed + audits.failed === 0) return DASH;
  return `${audits.passed} ✓ · ${audits.failed} ✗`;
}

/** Wall-clock time of a server timestamp, "14:03:27". */
export function formatClock(at: number): string {
  const d = new Date(at);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((x) => String(x).padStart(2, "0")).join(":");
}

/** First characters of a PeerJS id (they are long uuids). */
export function shortId(id: string, length = 8): string {
  return id.length <= length ? id : `${id.slice(0, length)}…`;
}

/** What to call a peer: the volunteer's name (untrusted text, shown as text), else its short id. */
export function peerLabel(peer: Pick<PeerStatus, "id" | "name"> | undefined, id = peer?.id ?? "?"): string {
  const name = peer?.name?.trim();
  return name !== undefined && name !== "" ? name : shortId(id);
}

/** Cuts text to `max` characters with an ellipsis. */
export function truncate(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, Math.max(1, max - 1)).join("")}…`;
}

export function describeModel(model: Job["model"]): string {
  if (model.kind === "mlp") return `MLP, hidden ${model.hidden.length > 0 ? model.hidden.join("-") : "none"} (${model.activation})`;
  return `CNN, filters ${model.filters.join("-")} (${model.kernelSize}×${model.kernelSize}), dense ${model.dense}`;
}

export function describeOptimizer(optimizer: Job["optimizer"]): string {
  if (optimizer.kind === "sgd") {
    return `SGD, lr ${optimizer.learningRate}${optimizer.momentum > 0 ? `, ${optimizer.nesterov ? "Nesterov " : ""}momentum ${optimizer.momentum}` : ""}`;
  }
  return `Adam, lr ${optimizer.learningRate}, β ${optimizer.beta1}/${optimizer.beta2}`;
}

/** The training algorithm and wire codec, as the job facts show them. */
export function describeAlgorithm(job: Pick<Job, "algorithm" | "codec" | "topkFraction">): string {
  const codec = job.codec === "topk" ? `top-k ${(job.topkFraction * 100).toFixed(2)}% with error feedback` : job.codec;
  if (job.algorithm.kind === "sync") return `sync (an all-reduce every step), ${codec} all-reduce`;
  return `DiLoCo: ${job.algorithm.innerSteps} local steps per round, outer ${describeOptimizer(job.algorithm.outer)}, ${codec} all-reduce`;
}

/** A piece of an event's text: plain text, or a peer id found in it (shown as the peer's name). */
export type TextPart = { text: string } | { peerId: string };

/** Splits `text` around every occurrence of the given peer ids (longest first), keeping everything else as text. */
export function splitPeerRefs(text: string, ids: readonly string[]): TextPart[] {
  const wanted = ids.filter((id) => id.length > 0 && text.includes(id));
  if (wanted.length === 0) return [{ text }];
  const escaped = [...wanted].sort((a, b) => b.length - a.length).map((id) => id.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const parts: TextPart[] = [];
  let at = 0;
  for (const match of text.matchAll(new RegExp(escaped.join("|"), "g"))) {
    if (match.index > at) parts.push({ text: text.slice(at, match.index) });
    parts.push({ peerId: match[0] });
    at = match.index + match[0].length;
  }
  if (at < text.length) parts.push({ text: text.slice(at) });
  return parts;
}

/** Requests per second, "0.4", "12.5", "1,234": a tenth matters at low load, not at high. */
export function formatRps(rps: number | undefined): string {
  if (rps === undefined || !Number.isFinite(rps) || rps < 0) return DASH;
  return rps < 100 ? String(Number(rps.toFixed(1))) : formatCount(rps);
}
