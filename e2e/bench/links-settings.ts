// What bench:links runs: the link profiles, the training settings, and each setting's job, derived
// from the default MLP job so that every run (and the plain TF.js baseline) trains the same model.
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Codec } from "@crowdtrain/protocol";
import { checkLinkProfile, type LinkProfile } from "../support/link-profile.ts";

const DEFAULT_JOB_FILE = resolve(import.meta.dirname, "../../apps/server/jobs/mnist-mlp.json");
/** Far more rounds than fit in a run's time cap: the run ends at 90% or at the cap, never by running out. */
const SYNC_ROUNDS = 20_000;
/** A sync round is one step: evaluating every 5 sees 90% within 5 steps of reaching it. */
export const SYNC_EVAL_EVERY_ROUNDS = 5;

/** As a job file writes it: DiLoCo's outer optimizer is left to the job's default (Nesterov SGD, lr 0.7). */
type AlgorithmInput = { kind: "sync" } | { kind: "diloco"; innerSteps: number };

export interface LinkSetting {
  /** As BENCH_LINK_SETTINGS names it. */
  name: string;
  algorithm: AlgorithmInput;
  codec: Codec;
}

const diloco = (innerSteps: number): AlgorithmInput => ({ kind: "diloco", innerSteps });

export const LINK_SETTINGS: readonly LinkSetting[] = [
  { name: "sync dense", algorithm: { kind: "sync" }, codec: "dense" },
  { name: "sync int8", algorithm: { kind: "sync" }, codec: "int8" },
  { name: "sync topk", algorithm: { kind: "sync" }, codec: "topk" },
  { name: "diloco H=8 dense", algorithm: diloco(8), codec: "dense" },
  { name: "diloco H=8 int8", algorithm: diloco(8), codec: "int8" },
  { name: "diloco H=32 int8", algorithm: diloco(32), codec: "int8" },
];

export const innerStepsOf = (setting: LinkSetting): number => (setting.algorithm.kind === "diloco" ? setting.algorithm.innerSteps : 1);

/** Comma-separated, e.g. BENCH_LINK_SETTINGS="sync dense,diloco H=8 int8"; unset: all. */
export function pickSettings(list: string | undefined): LinkSetting[] {
  if (list === undefined || list.trim() === "") return [...LINK_SETTINGS];
  return list.split(",").map((raw) => {
    const name = raw.trim();
    const setting = LINK_SETTINGS.find((s) => s.name === name);
    if (setting === undefined) throw new Error(`BENCH_LINK_SETTINGS: unknown setting ${JSON.stringify(name)}; valid: ${LINK_SETTINGS.map((s) => s.name).join(", ")}`);
    return setting;
  });
}

/** Comma-separated, e.g. BENCH_LINK_PROFILES=thin; unset: lan,thin. */
export function pickProfiles(list: string | undefined): LinkProfile[] {
  const names = list === undefined || list.trim() === "" ? ["lan", "thin"] : list.split(",").map((name) => name.trim());
  return names.map((name) => {
    try {
      return checkLinkProfile(name);
    } catch (error) {
      throw new Error(`BENCH_LINK_PROFILES: ${(error as Error).message}`, { cause: error });
    }
  });
}

/**
 * The default job with the setting's algorithm and codec: no epoch limit, spot checks off (audits
 * would load the server's CPU, which the tabs share), and evaluations often enough to see 90% early
 * (a DiLoCo round is H steps, so every round).
 */
export function linkJob(setting: LinkSetting): Record<string, unknown> {
  const { epochs: _epochs, ...base } = JSON.parse(readFileSync(DEFAULT_JOB_FILE, "utf8")) as Record<string, unknown>;
  const steps = innerStepsOf(setting);
  const slug = setting.name.toLowerCase().replace(/[^a-z0-9]+/g, "-");
  return {
    ...base,
    name: `bench-links-${slug}`,
    rounds: Math.ceil(SYNC_ROUNDS / steps),
    evalEveryRounds: steps === 1 ? SYNC_EVAL_EVERY_ROUNDS : 1,
    spotCheck: 0,
    algorithm: setting.algorithm,
    codec: setting.codec,
  };
}

export function writeLinkJob(dir: string, setting: LinkSetting): string {
  const file = join(dir, "job.json");
  writeFileSync(file, `${JSON.stringify(linkJob(setting), null, 2)}\n`);
  return file;
}
