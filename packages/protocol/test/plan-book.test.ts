import { describe, expect, it } from "vitest";
import { MessageError, parseCoordinatorMessage, PlanBook, type RoundMessage } from "../src/index.ts";

const ring = { kind: "ring" as const, members: ["w-a", "w-b"] };
const round = (attempt: number, extra: Partial<RoundMessage>): RoundMessage => ({ type: "round", attempt, round: 1, epoch: 0, lease: [0], frameBytes: 1024, upload: false, ...extra });

describe("PlanBook", () => {
  it("keeps a plan received in full under its number and gives it to rounds that name that number", () => {
    const book = new PlanBook();
    expect(book.resolve(round(1, { plan: ring, planId: 3 })).plan).toEqual(ring);
    expect(book.resolve(round(2, { planId: 3 }))).toMatchObject({ attempt: 2, planId: 3, plan: ring });
    // A new plan in full replaces it; the old number is no longer known.
    const other = { kind: "direct" as const, members: ["w-b", "w-a"], aggregation: "centered-clip" as const };
    book.resolve(round(3, { plan: other, planId: 4 }));
    expect(book.resolve(round(4, { planId: 4 })).plan).toEqual(other);
    expect(() => book.resolve(round(5, { planId: 3 }))).toThrow(MessageError);
  });

  it("refuses a round that names a plan never received, or names none at all; forgets on a new connection", () => {
    const book = new PlanBook();
    expect(() => book.resolve(round(1, { planId: 0 }))).toThrow(/names plan 0, which this connection never received/);
    expect(() => book.resolve(round(1, {}))).toThrow(/names plan \(none\)/);
    book.resolve(round(2, { plan: ring, planId: 0 }));
    book.forget();
    expect(() => book.resolve(round(3, { planId: 0 }))).toThrow(MessageError);
    // A plan sent in full without a number (an older sender) is used, and names nothing later rounds can use.
    expect(book.resolve(round(4, { plan: ring })).plan).toEqual(ring);
    expect(() => book.resolve(round(5, { planId: 0 }))).toThrow(MessageError);
  });

  it("the wire form parses with the plan, without it, and refuses a bad plan number", () => {
    const full = JSON.stringify(round(1, { plan: ring, planId: 0 }));
    expect(parseCoordinatorMessage(full)).toMatchObject({ plan: ring, planId: 0 });
    expect(parseCoordinatorMessage(JSON.stringify(round(2, { planId: 0 })))).not.toHaveProperty("plan");
    for (const planId of [-1, 1.5, "0", Number.MAX_SAFE_INTEGER + 2]) {
      expect(() => parseCoordinatorMessage(JSON.stringify(round(3, { planId: planId as number })))).toThrow(MessageError);
    }
  });
});
