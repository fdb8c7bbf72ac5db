// Spot checks end to end in the server: scripted workers compute real gradients on the CPU backend
// (what an honest tab computes), commit to their digests, and answer audits; the server recomputes
// and judges. Everything talks to 127.0.0.1 only.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseJob, parseStatus, type CoordinatorMessage, type Job } from "@crowdtrain/protocol";
import { batchTensors, buildModel, computeGradient, contributionDigest, runInnerStepsSync, writeWeights, type Dataset, type DatasetManifest } from "@crowdtrain/training";
import { loadSplitFromDir, readManifest } from "@crowdtrain/training/node";
import { buildDatasets, request, Servers, smallJob, until } from "./hardening/support.ts";
import { ScriptedWorker } from "./support/scripted-worker.ts";

const auditedJob = parseJob({ ...smallJob, name: "audits", spotCheck: 1 });
let datasets: Awaited<ReturnType<typeof buildDatasets>>;
let manifest: DatasetManifest;
let train: Dataset;
const servers = new Servers(() => datasets.dir);

beforeAll(async () => {
  datasets = await buildDatasets();
  manifest = await readManifest(join(datasets.dir, "mnist"));
  train = await loadSplitFromDir(join(datasets.dir, "mnist"), "train", manifest);
}, 120_000);

afterAll(async () => {
  await servers.closeAll();
  datasets?.remove();
});

/** The honest contribution of `lease` at `weights`, as a tab on the CPU backend computes it for `job`. */
function honestGradient(weights: Float32Array, lease: readonly number[], job: Job = auditedJob): Float32Array {
  const model = buildModel(job.model, manifest.inputShape, manifest.classes, job.seed);
  if (job.algorithm.kind === "diloco") {
    try {
      return runInnerStepsSync({ model, optimizer: job.optimizer, train, manifest, start: weights, lease, steps: job.algorithm.innerSteps }).pseudoGradient;
    } finally {
      model.dispose();
    }
  }
  const { xs, ys } = batchTensors(train, lease, manifest.inputShape, manifest.classes);
  try {
    writeWeights(model, weights);
    return computeGradient(model, xs, ys).gradient;
  } finally {
    xs.dispose();
    ys.dispose();
    model.dispose();
  }
}

type RoundMessage = Extract<CoordinatorMessage, { type: "round" }>;

/** Both workers contribute, apply the same mean of what they committed to, and the round commits. */
async function playRound(workers: { worker: ScriptedWorker; twist?: (g: Float32Array) => Float32Array }[], job: Job = auditedJob): Promise<RoundMessage[]> {
  const rounds = await Promise.all(workers.map(({ worker }) => worker.next("round")));
  const sent = workers.map(({ worker, twist }, k) => {
    const round = rounds[k] as RoundMessage;
    const gradient = honestGradient(worker.held.weights, round.lease, job);
    const mine = twist?.(gradient) ?? gradient;
    worker.contribute(round, mine);
    return mine;
  });
  const mean = new Float32Array(sent[0]!.length);
  for (const g of sent) for (let i = 0; i < mean.length; i++) mean[i]! += g[i]! / sent.length;
  for (const [k, { worker }] of workers.entries()) {
    const round = rounds[k] as RoundMessage;
    worker.step(round, {}, mean);
    if (round.upload) expect((await worker.upload(round.round)).status).toBe(204);
  }
  for (const { worker } of workers) worker.adopt(await worker.next("commit"));
  return rounds;
}

describe("spot checks by replication", () => {
  it("an honest contribution passes; a sign-flipped one is caught, evicted, and its rounds rolled back", async () => {
    const server = await servers.start({ job: auditedJob, minWorkers: 2 });
    const honest = await new ScriptedWorker(server.url, { name: "honest" }).join();
    const liar = await new ScriptedWorker(server.url, { name: "liar" }).join();
    await Promise.all([honest.sync(), liar.sync()]);
    const start = honest.held;

    const [round] = await playRound([{ worker: honest }, { worker: liar, twist: (g) => g.map((x) => -x) }]);
    await until(() => honest.audits.has(round!.round) && liar.audits.has(round!.round), "both audits answered", 15_000);
    expect([honest.audits.get(1), liar.audits.get(1)]).toEqual([204, 204]);

    // The liar is evicted with the reason; the honest worker is sent back to the start's state.
    expect((await liar.closedBy()).code).toBe(1008);
    const sync = await honest.next("sync");
    expect(sync.round).toBe(2);
    const state = await honest.sync();
    expect(state.round).toBe(2);
    expect(state.hash).toBe(start.hash);

    const status = parseStatus(await (await fetch(`${server.url}/api/status`)).json());
    const audits = status.audits!;
    expect([audits.passed, audits.failed]).toEqual([1, 1]);
    const verdicts = new Map(audits.recent.map((a) => [a.peer, a]));
    expect(verdicts.get(honest.peerId)).toMatchObject({ outcome: "passed", round: 1 });
    expect(verdicts.get(honest.peerId)?.relativeError).toBeLessThan(1e-6);
    expect(verdicts.get(liar.peerId)).toMatchObject({ outcome: "failed", round: 1 });
    expect(verdicts.get(liar.peerId)?.relativeError).toBeCloseTo(2, 3);
    expect(status.peers.find((p) => p.id === honest.peerId)?.audits).toEqual({ passed: 1, failed: 0 });
    expect(status.peers.find((p) => p.id === liar.peerId)?.leftBecause).toMatch(/failed the spot check of round 1/);
    expect(status.events.map((e) => e.text).join("\n")).toMatch(/undid round 1; round 2 restarts from the state of round 0/);
    honest.close();
  }, 60_000);

  it("DiLoCo: the server replays the inner steps; a member that skipped half of them is caught", async () => {
    const job = parseJob({ ...smallJob, name: "audits-diloco", spotCheck: 1, algorithm: { kind: "diloco", innerSteps: 3 } });
    const server = await servers.start({ job, minWorkers: 2 });
    const honest = await new ScriptedWorker(server.url, { name: "honest" }).join();
    const lazy = await new ScriptedWorker(server.url, { name: "lazy" }).join();
    await Promise.all([honest.sync(), lazy.sync()]);
    const [round] = await playRound([{ worker: honest }, { worker: lazy, twist: (d) => d.map((x) => x / 2) }], job);
    // The lease is 3 batches of the job's batch size, split between the two.
    expect(round!.lease.length).toBeGreaterThan(job.batchSize / 2);
    await until(() => honest.audits.has(1) && lazy.audits.has(1), "both audits answered", 15_000);
    expect((await lazy.closedBy()).reason).toMatch(/failed the spot check of round 1/);
    const status = parseStatus(await (await fetch(`${server.url}/api/status`)).json());
    const verdicts = new Map(status.audits!.recent.map((a) => [a.peer, a]));
    expect(verdicts.get(honest.peerId)).toMatchObject({ outcome: "passed", round: 1 });
    expect(verdicts.get(honest.peerId)?.relativeError).toBeLessThan(1e-6);
    expect(verdicts.get(lazy.peerId)).toMatchObject({ outcome: "failed", round: 1 });
    expect(verdicts.get(lazy.peerId)?.relativeError).toBeCloseTo(0.5, 3);
    honest.close();
  }, 60_000);

  it("a member that uploads something else than the digest it committed to fails", async () => {
    const server = await servers.start({ job: auditedJob, minWorkers: 1 });
    const swapper = await new ScriptedWorker(server.url).join();
    await swapper.sync();
    const round = await swapper.next("round");
    const gradient = honestGradient(swapper.held.weights, round.lease);
    // Commits to the honest gradient, but what it would have sent (and shows) is scaled.
    swapper.contribute(round, gradient, gradient.map((x) => x * 3));
    swapper.step(round, {}, gradient);
    expect((await swapper.upload(round.round)).status).toBe(204);
    swapper.adopt(await swapper.next("commit"));
    expect((await swapper.closedBy(15_000)).reason).toMatch(/failed the spot check of round 1: its upload hashes to [0-9a-f]{12}, not the digest/);
  }, 60_000);

  it("only an audited member may upload, with its session token, the exact size", async () => {
    const server = await servers.start({ job: auditedJob, minWorkers: 2 });
    const a = await new ScriptedWorker(server.url).join();
    const b = await new ScriptedWorker(server.url).join();
    const put = (round: string, peer: string, token: string, body: Uint8Array) =>
      request(`${server.url}/api/contribution/${round}`, {
        method: "PUT",
        headers: { "content-type": "application/octet-stream", "x-crowdtrain-peer": peer, authorization: `Bearer ${token}` },
        body,
      });
    const small = new Uint8Array(8);
    expect((await put("1", a.peerId, b.identity!.sessionToken, small)).status).toBe(401);
    expect((await put("1", a.peerId, a.identity!.sessionToken, small)).status).toBe(403);
    expect((await put("0x1", a.peerId, a.identity!.sessionToken, small)).status).toBe(400);
    // Audited: a wrong size fails the audit (and its author), not the server.
    await Promise.all([a.sync(), b.sync()]);
    const rounds = await Promise.all([a.next("round"), b.next("round")]);
    // Committed by hand (not contribute()), so the workers keep nothing to answer their audits with.
    const digest = contributionDigest(new Float32Array(a.held.weights.length));
    for (const [k, w] of [a, b].entries()) w.send({ type: "phase", attempt: rounds[k]!.attempt, phase: "reducing", digest });
    for (const [k, w] of [a, b].entries()) {
      w.step(rounds[k]!);
      if (rounds[k]!.upload) expect((await w.upload(1)).status).toBe(204);
    }
    await Promise.all([a.next("audit"), b.next("audit")]);
    const answer = await put("1", a.peerId, a.identity!.sessionToken, small);
    expect(answer.status).toBe(204);
    expect((await a.closedBy(15_000)).reason).toMatch(/uploaded 8 bytes for a contribution of \d+/);
    b.close();
  }, 60_000);
});
