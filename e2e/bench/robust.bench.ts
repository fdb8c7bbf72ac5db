// npm run bench:robust — 4 cpu tabs train a short MNIST job, one of them dishonest (lab page), for
// each attack x aggregation; plus each aggregation without an attacker. e2e/results/robust.json.
// BENCH_AGGREGATIONS=mean,centered-clip and BENCH_ATTACKS=scale,zero pick a subset.
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
const ATTACKS = (process.env.BENCH_ATTACKS ?? "scale,sign-flip,huge,noise,zero,claim,wrong-hash").split(",") as LabAttack[];
const ROUNDS = 30;
/** A run that has not finished by then is recorded as stalled (an attack can keep a mean job from committing). */
const RUN_TIMEOUT_MS = 150_000;
const POLL = { intervals: [1_000] };

type Row = {
  aggregation: string;
  attack: string;
  done: boolean;
  rounds: number;
  finalAccuracy: number;
  /** The committed round in which the attacker was first struck (1 = the first round), or null. */
  detectedAfterRounds: number | null;
  evicted: boolean;
  honestEvicted: number;
  roundMsMedian: number;
};

function jobFile(dir: string, aggregation: string): string {
  const file = join(dir, `robust-${aggregation}.json`);
  const job = { name: `bench-robust-${aggregation}`, dataset: "mnist", model: { kind: "mlp", hidden: [64] }, optimizer: { kind: "adam", learningRate: 0.002 }, batchSize: 200, rounds: ROUNDS, evalEveryRounds: 5, aggregation, seed: 12 };
  writeFileSync(file, JSON.stringify(job));
  return file;
}

function measure(status: Status, aggregation: string, attack: string, attacker: string | undefined, honest: (string | undefined)[]): Row {
  const strike = attacker === undefined ? undefined : status.events.find((e) => e.kind === "strike" && e.text.startsWith(attacker));
  const before = strike === undefined ? undefined : status.recentRounds.filter((r) => r.at < strike.at).length;
  const row = (id: string | undefined) => status.peers.find((p) => p.id === id);
  return {
    aggregation,
    attack,
    done: status.status === "done",
    rounds: status.round,
    finalAccuracy: latestAccuracy(status),
    detectedAfterRounds: before === undefined ? null : before + 1,
    evicted: /evicted/.test(row(attacker)?.leftBecause ?? ""),
    honestEvicted: honest.filter((id) => /evicted/.test(row(id)?.leftBecause ?? "")).length,
    roundMsMedian: status.recentRounds.length === 0 ? Number.NaN : median(status.recentRounds.map((r) => r.roundMs)),
  };
}

for (const aggregation of AGGREGATIONS) {
  for (const attack of ["clean", ...ATTACKS]) {
    test(`${aggregation}, ${attack}`, async ({ launchServer, openWorkers }) => {
      test.setTimeout(RUN_TIMEOUT_MS + 90_000);
      const dir = mkdtempSync(join(tmpdir(), "crowdtrain-bench-robust-"));
      try {
        const server = await launchServer(["--min-workers", "4", "--job", jobFile(dir, aggregation)]);
        const honest = await openWorkers(attack === "clean" ? 4 : 3, "/?backends=cpu", server);
        for (const page of honest) await page.click("#start");
        let lab: Page | undefined;
        if (attack !== "clean") {
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
        const row = measure(await fetchStatus(server.url), aggregation, attack, attacker, honestIds);
        const all = updateResults<Record<string, Row>>("robust", `${aggregation}/${attack}`, row);
        const rows = Object.values(all).filter((r): r is Row => typeof r === "object" && r !== null && "aggregation" in r);
        const clean = (agg: string) => rows.find((r) => r.aggregation === agg && r.attack === "clean");
        console.log(
          `\n${table(
            ["aggregation", "attack", "done", "rounds", "accuracy", "clean acc", "detected in round", "evicted", "honest evicted", "round ms", "x mean round"],
            rows.map((r) => [
              r.aggregation,
              r.attack,
              String(r.done),
              String(r.rounds),
              r.finalAccuracy.toFixed(3),
              clean(r.aggregation)?.finalAccuracy.toFixed(3) ?? "-",
              String(r.detectedAfterRounds ?? "-"),
              String(r.evicted),
              String(r.honestEvicted),
              r.roundMsMedian.toFixed(0),
              (r.roundMsMedian / (clean("mean")?.roundMsMedian ?? Number.NaN)).toFixed(2),
            ]),
          )}`,
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
}
