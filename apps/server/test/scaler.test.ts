// The serving pool's size as the autoscaler loop counts it: servers, plus members it asked to move to
// serving that the coordinator has not moved yet, minus servers it asked to move back.
import type { MemberRole } from "@crowdtrain/coordination";
import { Dispatcher } from "@crowdtrain/serving";
import { describe, expect, it } from "vitest";
import { PoolScaler, type PoolMember } from "../src/serving/scaler.ts";

const member = (peerId: string, role: MemberRole, samplesPerSecond: number): PoolMember => ({ peerId, role, state: "ready", samplesPerSecond, joinedAt: 0 });

function scalerWith(members: Map<string, PoolMember>, config: { minTabs: number; maxTabs: number }) {
  const asked: [string, MemberRole][] = [];
  const dispatcher = new Dispatcher();
  const scaler = new PoolScaler(
    {
      withRole: (role) => [...members.values()].filter((m) => m.role === role),
      member: (peerId) => members.get(peerId),
      minTrainers: 1,
      setRole: (peerId, role) => asked.push([peerId, role]),
      log: () => undefined,
      dispatcher,
    },
    config,
  );
  return { scaler, asked, dispatcher };
}

describe("PoolScaler.poolSize", () => {
  it("counts moves asked and not yet made, and forgets a mover that left", () => {
    const members = new Map([member("s", "server", 9), member("slow", "trainer", 1), member("mid", "trainer", 2), member("fast", "trainer", 3)].map((m) => [m.peerId, m]));
    const { scaler, asked } = scalerWith(members, { minTabs: 3, maxTabs: 3 });
    expect(scaler.poolSize()).toBe(1);
    scaler.scale(0);
    // Three tabs wanted: the two slowest trainers are asked to serve; the pool counts them already.
    expect(asked).toEqual([["slow", "server"], ["mid", "server"]]);
    expect(scaler.poolSize()).toBe(3);
    // The coordinator moves one: counted once, as a server.
    members.set("slow", { ...(members.get("slow") as PoolMember), role: "server" });
    expect(scaler.poolSize()).toBe(3);
    scaler.roleChanged("slow", "server");
    expect(scaler.poolSize()).toBe(3);
    // The other leaves before it moved.
    members.delete("mid");
    expect(scaler.poolSize()).toBe(2);
    scaler.departed("mid");
    expect(scaler.poolSize()).toBe(2);
  });

  it("stops counting a server it asked to move back to training", () => {
    const members = new Map([member("a", "trainer", 1), member("b", "trainer", 2), member("c", "trainer", 3)].map((m) => [m.peerId, m]));
    const quick = { minTabs: 0, maxTabs: 2, scaleUpDelayMs: 0, scaleDownDelayMs: 0, stableWindowMs: 1_000, panicWindowMs: 500 };
    const { scaler, asked, dispatcher } = scalerWith(members, quick);
    // A burst: the pool grows to its maximum, and the coordinator makes both moves.
    for (let k = 0; k < 100; k++) scaler.arrived();
    scaler.scale(1_000);
    expect(asked.map(([, role]) => role)).toEqual(["server", "server"]);
    for (const [peerId] of asked) {
      members.set(peerId, { ...(members.get(peerId) as PoolMember), role: "server" });
      scaler.roleChanged(peerId, "server");
      // Its serve socket opened (a tab this loop moved: it may be moved back).
      dispatcher.addTab(peerId, 8, false);
    }
    expect(scaler.poolSize()).toBe(2);
    // Quiet long after: both go back; they no longer count while the coordinator moves them.
    asked.length = 0;
    scaler.scale(60_000);
    expect(asked.map(([, role]) => role)).toEqual(["trainer", "trainer"]);
    expect(scaler.poolSize()).toBe(0);
  });
});
