// npm run bench:robust — 4 cpu tabs train a short MNIST job, one of them dishonest (lab page), for
// each attack x aggregation, with spot checks at the job's default probability; plus each
// aggregation without an attacker, with and without spot checks (their round-time cost).
// e2e/results/robust.json. BENCH_AGGREGATIONS=mean,centered-clip, BENCH_ATTACKS=scale,zero pick a
// subset; BENCH_SPOT_CHECK=0.1 sets the probability.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "@playwright/test";
import type { LabAttack } from "../../apps/worker/src/lab-api.ts";
import type {} from "../../apps/worker/src/worker-api.ts";
import { expect, test } from "../fixtures.ts";
import { fetchStatus, latestAccuracy, type Status } from "../support/status.ts";
import { median, table, updateResults } from "./report.ts";

const AGGREGATIONS = (process.env.BENCH_AGGREGATIONS ?? "mean,centered-clip,trimmed-mean").split(",");
const ATTACKS = (process.env.BENCH_ATTACKS ?? "scale,sign-flip,huge,noise,zero,claim,wrong-hash,accuse").split(",") as LabAttack[];
const SPOT_CHECK = Number(process.env.BENCH_SPOT_CHECK ?? "0.1");
/** The clean run without spot checks: the baseline their cost is measured against. */
const NO_CHECK = "clean-no-spot-check";
const ROUNDS = 30;
/** A run that has not finished by then is recorded as stalled (an attack can keep a mean job from committing). */
const RUN_TIMEOUT_MS = 150_000;
const POLL = { intervals: [1_000] };

type Row = {
  aggregation: string;
  attack: string;
  spotCheck: number;
  done: boolean;
  rounds: number;
  finalAccuracy: number;
  /** Committed rounds up to the attacker's first penalty (strike or failed audit; 1 = the first round), or null. */
  detectedAfterRounds: number | null;
  /** How it was first caught: "strike" (clipping, hashes, claims, accusations) or "audit". */
  detectedBy: string | null;
  rollbacks: number;
  evicted: boolean;
  honestEvicted: number;
  /** Why the attacker left (evicted after strikes, failed a spot check), if it did. */
  attackerLeftBecause: string | null;
  /** Spot checks of honest tabs that did not pass (should be none), with the server's words. */
  honestAuditProblems: string[];
  roundMsMedian: number;
};

function jobFile(dir: string, aggregation: string, spotCheck: number): string {
  const file = join(dir, `robust-${aggregation}.json`);
  const job = { name: `bench-robust-${aggregation}`, dataset: "mnist", model: { kind: "mlp", hidden: [64] }, optimizer: { kind: "adam", learningRate: 0.002 }, batchSize: 200, rounds: ROUNDS, evalEveryRounds: 5, aggregation, spotCheck, seed: 12 };
  writeFileSync(file, JSON.stringify(job));
  return file;
}

function measure(status: Status, aggregation: string, attack: string, spotCheck: number, attacker: string | undefined, honest: (string | undefined)[]): Row {
  const caught = (e: Status["events"][number]) =>
    attacker !== undefined && ((e.kind === "strike" && e.text.startsWith(attacker)) || (e.kind === "audit" && e.text.startsWith(`spot check of ${attacker}`) && /FAILED/.test(e.text)));
  const first = status.events.find(caught);
  const before = first === undefined ? undefined : status.recentRounds.filter((r) => r.at <= first.at).length;
  const row = (id: string | undefined) => status.peers.find((p) => p.id === id);
  // Removed by the coordinator: struck out, or failed a spot check (either evicts and bans).
  const removed = (id: string | undefined) => /evicted|failed the spot check/.test(row(id)?.leftBecause ?? "");
  return {
    aggregation,
    attack,
    spotCheck,
    done: status.status === "done",
    rounds: status.round,
    finalAccuracy: latestAccuracy(status),
    detectedAfterRounds: before === undefined ? null : Math.max(before, 1),
    detectedBy: first === undefined ? null : first.kind,
    rollbacks: status.events.filter((e) => e.kind === "rollback").length,
    evicted: removed(attacker),
    honestEvicted: honest.filter(removed).length,
    attackerLeftBecause: row(attacker)?.leftBecause ?? null,
    honestAuditProblems: (status.audits?.recent ?? []).filter((a) => honest.includes(a.peer) && a.outcome !== "passed").map((a) => `round ${a.round} ${a.outcome}: ${a.detail}`),
    roundMsMedian: status.recentRounds.length === 0 ? Number.NaN : median(status.recentRounds.map((r) => r.roundMs)),
  };
}

for (const aggregation of AGGREGATIONS) {
  for (const attack of [NO_CHECK, "clean", ...ATTACKS]) {
    test(`${aggregation}, ${attack}`, async ({ launchServer, openWorkers }) => {
      test.setTimeout(RUN_TIMEOUT_MS + 90_000);
      const dir = mkdtempSync(join(tmpdir(), "crowdtrain-bench-robust-"));
      const isClean = attack === "clean" || attack === NO_CHECK;
      const spotCheck = attack === NO_CHECK ? 0 : SPOT_CHECK;
      try {
        const server = await launchServer(["--min-workers", "4", "--job", jobFile(dir, aggregation, spotCheck)]);
        const honest = await openWorkers(isClean ? 4 : 3, "/?backends=cpu", server);
        for (const page of honest) await page.click("#start");
        let lab: Page | undefined;
        if (!isClean) {
          [lab] = await openWorkers(1, "/lab.html", server);
          await lab!.evaluate((a) => window.crowdtrainLab.labDishonest({ attack: a, backends: ["cpu"] }), attack as LabAttack);
        }
        const attackerId = async (): Promise<string | undefined> => lab?.evaluate(() => window.crowdtrainLab.labDishonestStatus()?.peerId);
        if (lab !== undefined) await expect.poll(attackerId, { timeout: 60_000 }).toMatch(/^w-/);
        const attacker = await attackerId();
        const honestIds = await Promise.all(honest.map((page) => page.evaluate(() => window.crowdtrainWorker?.status().peerId)));
        await expect
          .poll(async () => (await fetchStatus(server.url)).status, { timeout: RUN_TIMEOUT_MS, ...POLL })
          .toBe("done")
          .catch((error: unknown) => console.log(`${aggregation}/${attack}: not done in ${RUN_TIMEOUT_MS} ms (${String(error).split("\n")[0]})`));
        const row = measure(await fetchStatus(server.url), aggregation, attack, spotCheck, attacker, honestIds);
        const all = updateResults<Record<string, Row>>("robust", `${aggregation}/${attack}`, row);
        const rows = Object.values(all).filter((r): r is Row => typeof r === "object" && r !== null && "aggregation" in r);
        const clean = (agg: string, kind = "clean") => rows.find((r) => r.aggregation === agg && r.attack === kind);
        console.log(
          `\n${table(
            ["aggregation", "attack", "p", "done", "rounds", "accuracy", "clean acc", "detected in round", "by", "rollbacks", "evicted", "honest evicted", "round ms", "x mean round", "x no checks"],
            rows.map((r) => [
              r.aggregation,
              r.attack,
              String(r.spotCheck),
              String(r.done),
              String(r.rounds),
              r.finalAccuracy.toFixed(3),
              clean(r.aggregation)?.finalAccuracy.toFixed(3) ?? "-",
              String(r.detectedAfterRounds ?? "-"),
              r.detectedBy ?? "-",
              String(r.rollbacks),
              String(r.evicted),
              String(r.honestEvicted),
              r.roundMsMedian.toFixed(0),
              (r.roundMsMedian / (clean("mean", NO_CHECK)?.roundMsMedian ?? Number.NaN)).toFixed(2),
              (r.roundMsMedian / (clean(r.aggregation, NO_CHECK)?.roundMsMedian ?? Number.NaN)).toFixed(2),
            ]),
          )}`,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}
