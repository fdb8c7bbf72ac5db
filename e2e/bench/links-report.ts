// bench:links output: the rows of e2e/results/links.json as a table, and the targets next to the
// figures. Targets are reported, never asserted: a benchmark measures speed, it does not gate on it.
import { table } from "./report.ts";

export const PLAIN_SECTION = "plainTfjs";
export const TARGETS_SECTION = "targets";

export interface PlainRow {
  backend: string;
  /** Training time to 90% test accuracy, evaluations excluded (the server evaluates off the tabs); null if never. */
  plainTfjsS: number | null;
  /** The same with the tab's own evaluations included. */
  plainWallS: number | null;
  stepsTo90: number | null;
  evalEverySteps: number;
  finalAccuracy: number;
  measuredAt: string;
}

export interface LinkRow {
  profile: string;
  setting: string;
  algorithm: string;
  codec: string;
  innerSteps: number;
  tabs: number;
  /** Why the measurement ended: "reached" (90%), "capped" (BENCH_LINK_RUN_S), "job done", "tab stopped". */
  endedBy: string;
  /** From the first round opening to the status showing test accuracy ≥ 0.9; null if not within the cap. */
  timeTo90S: number | null;
  roundsTo90: number | null;
  /** roundsTo90 x inner steps: optimizer steps of the model, comparable with plain TF.js's steps. */
  stepsTo90: number | null;
  /** From the first round opening to the end of the measurement (90% or the cap). */
  runS: number;
  rounds: number;
  bytesSentPerTabPerRound: number;
  lastRoundLinkBytes: number | null;
  computeUtilisation: number;
  utilisationRounds: number;
  roundMsMedian: number;
  computeMsMedian: number;
  allReduceMsMedian: number;
  finalAccuracy: number;
  /** Distinct last errors the tabs showed (round aborts, reconnects): recovered from, kept as notes. */
  tabNotes: string[];
  /** Real errors; the bench fails when there are any. */
  problems: string[];
  /** The server's recent unusual events (strikes, aborts, rollbacks, errors), oldest first. */
  serverEvents: string[];
  measuredAt: string;
}

export interface Target {
  what: string;
  figure: string;
  met: boolean | null;
}

const isLinkRow = (value: unknown): value is LinkRow => typeof value === "object" && value !== null && "setting" in value && "profile" in value;
const fixed = (x: number | null | undefined, digits: number): string => (x === null || x === undefined || Number.isNaN(x) ? "-" : x.toFixed(digits));
const verdict = (met: boolean | null): string => (met === null ? "n/a" : met ? "met" : "MISSED");

export function linkRows(results: Record<string, unknown>): LinkRow[] {
  return Object.values(results).filter(isLinkRow);
}

/** The dense row bytes are compared with: same profile and algorithm kind if run, else sync dense there. */
function denseReference(rows: readonly LinkRow[], row: LinkRow): LinkRow | undefined {
  const dense = rows.filter((r) => r.profile === row.profile && r.codec === "dense" && r.problems.length === 0);
  return dense.find((r) => r.algorithm === row.algorithm) ?? dense.find((r) => r.algorithm === "sync");
}

function bestTime(rows: readonly LinkRow[], profile: string, plain: PlainRow | undefined, factor: number): Target {
  const ran = rows.filter((r) => r.profile === profile);
  const reached = ran.filter((r) => r.timeTo90S !== null).sort((a, b) => (a.timeTo90S as number) - (b.timeTo90S as number));
  const best = reached[0];
  const limit = plain === undefined || plain.plainTfjsS === null ? null : plain.plainTfjsS * factor;
  const what = `best ${profile} time to 90% <= ${factor}x plain TF.js`;
  if (ran.length === 0 || limit === null) return { what, figure: ran.length === 0 ? `no ${profile} runs` : "no plain TF.js figure", met: null };
  if (best === undefined) return { what, figure: `no ${profile} run reached 90% (limit ${limit.toFixed(1)} s)`, met: false };
  return { what, figure: `${best.setting}: ${best.timeTo90S?.toFixed(1)} s (limit ${limit.toFixed(1)} s)`, met: (best.timeTo90S as number) <= limit };
}

export function targets(results: Record<string, unknown>): Target[] {
  const rows = linkRows(results);
  const plain = results[PLAIN_SECTION] as PlainRow | undefined;
  const list: Target[] = [bestTime(rows, "thin", plain, 1.5), bestTime(rows, "lan", plain, 1.2)];
  for (const r of rows.filter((row) => row.profile === "thin" && row.algorithm === "diloco" && row.innerSteps >= 8)) {
    list.push({ what: `utilisation >= 0.9 (thin, ${r.setting})`, figure: fixed(r.computeUtilisation, 2), met: Number.isNaN(r.computeUtilisation) ? null : r.computeUtilisation >= 0.9 });
  }
  for (const [codec, factor] of [["int8", 0.26], ["topk", 0.01]] as const) {
    for (const r of rows.filter((row) => row.codec === codec)) {
      const dense = denseReference(rows, r);
      const ratio = dense === undefined ? Number.NaN : r.bytesSentPerTabPerRound / dense.bytesSentPerTabPerRound;
      const what = `${codec} bytes <= ${factor}x dense (${r.profile}, ${r.setting})`;
      list.push({ what, figure: dense === undefined ? "no dense run to compare" : `${ratio.toFixed(4)}x ${dense.setting}`, met: Number.isNaN(ratio) ? null : ratio <= factor });
    }
  }
  return list;
}

export function formatLinks(results: Record<string, unknown>): string {
  const rows = linkRows(results);
  const plain = results[PLAIN_SECTION] as PlainRow | undefined;
  const plainS = plain?.plainTfjsS ?? null;
  const runs = table(
    ["profile", "setting", "time to 90% s", "x plain", "rounds", "steps", "bytes/tab/round", "x dense", "utilisation", "round ms", "final acc", "problems"],
    rows.map((r) => {
      const dense = denseReference(rows, r);
      return [
        r.profile,
        r.setting,
        fixed(r.timeTo90S, 1),
        r.timeTo90S === null || plainS === null ? "-" : (r.timeTo90S / plainS).toFixed(2),
        String(r.roundsTo90 ?? "-"),
        String(r.stepsTo90 ?? "-"),
        fixed(r.bytesSentPerTabPerRound, 0),
        dense === undefined ? "-" : (r.bytesSentPerTabPerRound / dense.bytesSentPerTabPerRound).toFixed(4),
        fixed(r.computeUtilisation, 2),
        fixed(r.roundMsMedian, 0),
        fixed(r.finalAccuracy, 3),
        String(r.problems.length),
      ];
    }),
  );
  const base = plain === undefined ? "plain TF.js: not measured" : `plain TF.js (1 ${plain.backend} tab, no cap): ${fixed(plain.plainTfjsS, 1)} s training to 90% in ${plain.stepsTo90 ?? "-"} steps (${fixed(plain.plainWallS, 1)} s with its evaluations every ${plain.evalEverySteps})`;
  const goals = table(["target", "figure", ""], targets(results).map((t) => [t.what, t.figure, verdict(t.met)]));
  return `${base}\n\n${runs}\n\n${goals}`;
}
