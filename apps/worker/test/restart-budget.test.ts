import { describe, expect, it } from "vitest";
import { RestartBudget } from "../src/restart-budget.ts";

describe("RestartBudget", () => {
  it("allows max restarts within a window, then none until the oldest leaves it", () => {
    const budget = new RestartBudget(3, 600_000);
    expect([0, 1_000, 2_000].map((t) => budget.take(t))).toEqual([true, true, true]);
    expect(budget.take(3_000)).toBe(false);
    expect(budget.take(599_999)).toBe(false);
    // The first restart (at 0) is a window old: one slot again, and only one.
    expect(budget.take(600_000)).toBe(true);
    expect(budget.take(600_001)).toBe(false);
    // A refused attempt takes nothing: later restarts count from the granted ones only.
    expect(budget.take(602_000)).toBe(true);
  });

  it("with a budget of none never restarts, and refuses a nonsensical budget", () => {
    expect(new RestartBudget(0, 1_000).take(0)).toBe(false);
    expect(() => new RestartBudget(-1, 1_000)).toThrow(RangeError);
    expect(() => new RestartBudget(1.5, 1_000)).toThrow(RangeError);
    expect(() => new RestartBudget(1, 0)).toThrow(RangeError);
  });
});
