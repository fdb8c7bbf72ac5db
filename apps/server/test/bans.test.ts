import { parseJob, parseStatus } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { BanList } from "../src/identity/bans.ts";
import { useJobServer } from "./support/job-server.ts";
import { ScriptedWorker } from "./support/scripted-worker.ts";

describe("BanList", () => {
  it("bans an address until its time is up, never loopback unless asked, and can be off", () => {
    let now = 0;
    const bans = new BanList(1_000, () => now);
    expect(bans.ban("10.0.0.7", "w-1", "evicted")).toBe(true);
    expect(bans.check("10.0.0.7")).toMatchObject({ peerId: "w-1", reason: "evicted", until: 1_000 });
    expect(bans.check("10.0.0.8")).toBeUndefined();
    expect(bans.ban("127.0.0.1", "w-2", "evicted")).toBe(false);
    expect(bans.ban("::ffff:127.0.0.1", "w-2", "evicted")).toBe(false);
    expect(bans.active().map((b) => b.address)).toEqual(["10.0.0.7"]);
    now = 1_000;
    expect(bans.check("10.0.0.7")).toBeUndefined();
    expect(bans.active()).toEqual([]);
    expect(new BanList(0, () => now).ban("10.0.0.7", "w", "x")).toBe(false);
    expect(new BanList(1_000, () => now, true).ban("127.0.0.1", "w", "x")).toBe(true);
  });
});

describe("an evicted member", () => {
  const job = parseJob({ name: "ban-test", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1 }, batchSize: 30, rounds: 50, spotCheck: 0 });
  const host = useJobServer({ job, minWorkers: 3, banLoopback: true });

  it("a member always reporting a wrong hash among three is evicted, its identity revoked and its address banned", async () => {
    const workers = await Promise.all([0, 1, 2].map(() => new ScriptedWorker(host.server.url).join()));
    await Promise.all(workers.map((w) => w.sync()));
    const [liar, ...honest] = workers as [ScriptedWorker, ScriptedWorker, ScriptedWorker];
    const wrong = "f".repeat(64);
    // Rounds commit by majority; the liar is struck each time it is in one, re-syncs, and is out
    // after maxStrikes (3). A round it is still syncing for runs without it.
    let lies = 0;
    for (let k = 0; k < 12 && lies < 3; k++) {
      const rounds = await Promise.all(honest.map((w) => w.next("round")));
      const members = rounds[0]!.plan.members;
      if (members.includes(liar.peerId)) {
        liar.step(await liar.next("round"), { hash: wrong });
        lies++;
      }
      await Promise.all(honest.map((w, i) => w.finishRound(rounds[i]!)));
      if (members.includes(liar.peerId) && lies < 3) {
        await liar.next("sync");
        await liar.sync();
      }
    }
    expect(lies).toBe(3);
    expect((await liar.closedBy()).code).toBe(1008);
    const status = parseStatus(await (await fetch(`${host.server.url}/api/status`)).json());
    const gone = status.peers.find((p) => p.id === liar.peerId);
    expect(gone).toMatchObject({ state: "gone", strikes: 3 });
    expect(gone?.leftBecause).toMatch(/evicted after 3 strikes/);
    expect(status.bans?.map((b) => b.peer)).toEqual([liar.peerId]);
    expect(status.peers.filter((p) => honest.some((w) => w.peerId === p.id)).every((p) => p.strikes === 0)).toBe(true);
    // Its identity is dead for uploads, and its address may not open a new worker socket.
    expect((await liar.upload(0, new Uint8Array(8))).status).toBe(401);
    const again = new ScriptedWorker(host.server.url);
    await expect(again.opened()).rejects.toThrow(/403/);
    honest.forEach((w) => w.close());
  }, 60_000);
});
