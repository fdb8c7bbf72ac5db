import { gridPlaces } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { buildPlan, gridSteps, groupsShape, GROUPS_ATTACH_COST_STEPS, GROUPS_AUTO_MIN_MEMBERS, GROUPS_MAX_ATTACHED_SHARE, GROUPS_MAX_FACTOR, torusFor, torusShape, TORUS_AUTO_ATTACH_MIN_MEMBERS, TORUS_AUTO_MIN_MEMBERS, type PlanSettings } from "../src/index.ts";
import { Harness } from "./sim.ts";

const MEAN: PlanSettings = { aggregation: "mean", codec: "dense", topology: "auto" };
const ids = (n: number): string[] => Array.from({ length: n }, (_, k) => `p${k}`);
const steps = (columns: number, rows: number): number => 2 * (columns - 1) + 2 * (rows - 1);

describe("torusShape", () => {
  it("fills the grid when the count factors, squarest first; attaches the rest otherwise (at most one per row)", () => {
    expect(torusShape(3)).toBeUndefined();
    expect(torusShape(4)).toEqual({ columns: 2, rows: 2, attached: 0 });
    expect(torusShape(5)).toEqual({ columns: 2, rows: 2, attached: 1 });
    expect(torusShape(16)).toEqual({ columns: 4, rows: 4, attached: 0 });
    expect(torusShape(1000)).toEqual({ columns: 25, rows: 40, attached: 0 });
    // A prime: 996 = 12 x 83 is too oblong, so 31 x 32 with five attached (one per row at most).
    expect(torusShape(997)).toEqual({ columns: 31, rows: 32, attached: 5 });
    for (let n = 4; n <= 1200; n++) {
      const shape = torusShape(n)!;
      expect(shape.columns * shape.rows + shape.attached).toBe(n);
      expect(shape.attached).toBeLessThanOrEqual(shape.rows);
      expect(shape.columns).toBeLessThanOrEqual(shape.rows);
      expect(shape.rows).toBeLessThanOrEqual(4 * shape.columns);
      // Far fewer steps than the flat ring's 2(n-1) once n is large.
      if (n >= 100) expect(steps(shape.columns, shape.rows)).toBeLessThan((2 * (n - 1)) / 4);
    }
  });
});

describe("buildPlan", () => {
  it("auto: a ring below 16 members; a full torus from 16; attached members only from 64", () => {
    expect(buildPlan(ids(15), MEAN)).toEqual({ kind: "ring", members: ids(15) });
    expect(buildPlan(ids(TORUS_AUTO_MIN_MEMBERS), MEAN)).toEqual({ kind: "torus", members: ids(16), columns: 4, rows: 4 });
    expect(buildPlan(ids(20), MEAN)).toEqual({ kind: "torus", members: ids(20), columns: 4, rows: 5 });
    expect(buildPlan(ids(17), MEAN).kind).toBe("ring"); // 4x4 would need an attached member
    expect(torusFor(TORUS_AUTO_ATTACH_MIN_MEMBERS - 3, MEAN)).toBeUndefined(); // 61, a prime
    expect(torusFor(TORUS_AUTO_ATTACH_MIN_MEMBERS + 3, MEAN)).toEqual({ columns: 6, rows: 11, attached: 1 });
    // From 64, groups cost fewer steps here (2⁶ with 3 attached: 12 + 15, against the torus's 30 + 15): auto runs them (below).
    expect(buildPlan(ids(67), MEAN)).toEqual({ kind: "groups", members: ids(67), dims: [2, 2, 2, 2, 2, 2] });
  });

  it("torus: from 4 members, attaching the rest; ring: never; robust jobs run direct plans and topk a ring whatever the topology", () => {
    expect(buildPlan(ids(5), { ...MEAN, topology: "torus" })).toEqual({ kind: "torus", members: ids(5), columns: 2, rows: 2 });
    expect(buildPlan(ids(3), { ...MEAN, topology: "torus" }).kind).toBe("ring");
    expect(buildPlan(ids(100), { ...MEAN, topology: "ring" }).kind).toBe("ring");
    expect(buildPlan(ids(100), { ...MEAN, codec: "topk" }).kind).toBe("ring");
    expect(buildPlan(ids(100), { ...MEAN, aggregation: "centered-clip" })).toEqual({ kind: "direct", members: ids(100), aggregation: "centered-clip" });
    expect(buildPlan(ids(100), { ...MEAN, codec: "int8", topology: "torus" })).toMatchObject({ kind: "torus", columns: 10, rows: 10 });
    expect(buildPlan(ids(100), { ...MEAN, codec: "int8" })).toMatchObject({ kind: "groups", dims: [2, 2, 5, 5] });
  });
});

describe("groupsShape and groups plans", () => {
  it("a grid of the count's small prime factors; else the cheapest such grid within 1/32 of the count, the rest attached (one per dimension-0 group)", () => {
    expect(groupsShape(3)).toBeUndefined();
    expect(groupsShape(4)).toEqual({ dims: [2, 2], attached: 0 });
    expect(groupsShape(1000)).toEqual({ dims: [2, 2, 2, 5, 5, 5], attached: 0 });
    expect(groupsShape(64)).toEqual({ dims: [2, 2, 2, 2, 2, 2], attached: 0 });
    // Attaching costs GROUPS_ATTACH_COST_STEPS once, however many are attached: 997 (a prime) runs
    // 972 = 2²·3⁵ (24 steps) with 25 attached, not 990 = 2·3²·5·11 (38 steps) with 7; 1,006 runs
    // 2³·5³ with 6 attached (30 steps), not 7·11·13 with 5 (56).
    expect(groupsShape(997)).toEqual({ dims: [2, 2, 3, 3, 3, 3, 3], attached: 25 });
    expect(groupsShape(1006)).toEqual({ dims: [2, 2, 2, 5, 5, 5], attached: 6 });
    expect(groupsShape(17)).toEqual({ dims: [2, 2, 2, 2], attached: 1 });
    for (let n = 4; n <= 1100; n++) {
      const shape = groupsShape(n)!;
      const places = gridPlaces(shape.dims);
      expect(places + shape.attached).toBe(n);
      expect(shape.dims.length).toBeGreaterThanOrEqual(2);
      expect(Math.max(...shape.dims)).toBeLessThanOrEqual(GROUPS_MAX_FACTOR);
      expect(shape.attached).toBeLessThanOrEqual(places / shape.dims[0]!);
      // No grid within that share costs fewer steps.
      const cost = gridSteps(shape.dims) + (shape.attached > 0 ? GROUPS_ATTACH_COST_STEPS : 0);
      if (n >= 64 && n <= 200) {
        for (let other = Math.floor(n * (1 - GROUPS_MAX_ATTACHED_SHARE)); other <= n; other++) {
          const exact = groupsShape(other);
          if (exact?.attached === 0) expect(gridSteps(exact.dims) + (other < n ? GROUPS_ATTACH_COST_STEPS : 0)).toBeGreaterThanOrEqual(cost);
        }
      }
    }
    expect(gridSteps([2, 2, 2, 5, 5, 5])).toBe(30);
  });

  it("auto runs groups from 64 members when they cost fewer steps than the torus, attaching counted; topology groups from 4", () => {
    expect(buildPlan(ids(GROUPS_AUTO_MIN_MEMBERS - 1), MEAN).kind).not.toBe("groups");
    expect(buildPlan(ids(GROUPS_AUTO_MIN_MEMBERS), MEAN)).toEqual({ kind: "groups", members: ids(64), dims: [2, 2, 2, 2, 2, 2] });
    expect(buildPlan(ids(1000), { ...MEAN, codec: "int8" })).toMatchObject({ kind: "groups", dims: [2, 2, 2, 5, 5, 5] });
    // 997: the torus 31x32 with 5 attached costs 60 + 15 steps, groups 24 + 15.
    expect(buildPlan(ids(997), MEAN)).toMatchObject({ kind: "groups", dims: [2, 2, 3, 3, 3, 3, 3] });
    expect(buildPlan(ids(997), { ...MEAN, topology: "torus" })).toMatchObject({ kind: "torus", columns: 31, rows: 32 });
    expect(buildPlan(ids(5), { ...MEAN, topology: "groups" })).toEqual({ kind: "groups", members: ids(5), dims: [2, 2] });
    expect(buildPlan(ids(3), { ...MEAN, topology: "groups" }).kind).toBe("ring");
    expect(buildPlan(ids(100), { ...MEAN, topology: "groups", codec: "topk" }).kind).toBe("ring");
    expect(buildPlan(ids(100), { ...MEAN, topology: "torus" }).kind).toBe("torus");
  });

  it("the coordinator sends a groups plan with every ready member and commits it like a ring", () => {
    const h = Harness.create({ minWorkers: 9, topology: "groups" });
    for (const peer of ids(9)) h.join(peer);
    const round = h.lastTo("p0", "round")!;
    expect(round.plan).toMatchObject({ kind: "groups", dims: [3, 3] });
    expect([...(round.plan?.members ?? [])].sort()).toEqual(ids(9));
    h.reportAll();
    expect(h.coordinator.state.committedRound).toBe(1);
  });
});

describe("the coordinator plans tori", () => {
  it("sends a torus plan with every ready member (one attached), commits it like a ring, and plans the next round alike", () => {
    const h = Harness.create({ minWorkers: 5, topology: "torus" });
    for (const peer of ids(5)) h.join(peer);
    const round = h.lastTo("p0", "round")!;
    expect(round.plan).toMatchObject({ kind: "torus", columns: 2, rows: 2 });
    expect([...(round.plan?.members ?? [])].sort()).toEqual(ids(5));
    h.reportAll();
    expect(h.coordinator.state.committedRound).toBe(1);
    expect(h.coordinator.state.current!.plan).toMatchObject({ kind: "torus", columns: 2, rows: 2 });
    expect(h.coordinator.state.current!.members).toHaveLength(5);
  });

  it("auto: 20 ready members get a 4x5 torus; the default config (no topology) is auto", () => {
    const h = Harness.create({ minWorkers: 20, batchSize: 40 });
    for (const peer of ids(20)) h.join(peer);
    expect(h.coordinator.state.current!.plan).toMatchObject({ kind: "torus", columns: 4, rows: 5 });
  });
});
