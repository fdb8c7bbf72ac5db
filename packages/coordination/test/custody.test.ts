import { describe, expect, it } from "vitest";
import { StateCustody } from "../src/custody.ts";

describe("StateCustody", () => {
  it("asks each holder once, then all over again; nobody holding it ends the asking", () => {
    const custody = new StateCustody();
    custody.want(5, "h5", "w-a", 0);
    expect(custody.lacking).toEqual({ round: 5, hash: "h5" });
    expect(custody.isAsked("w-a")).toBe(true);
    // The uploader was asked with the round: the next ask skips it.
    expect(custody.askNext(["w-a", "w-b", "w-c"], 10)).toBe("w-b");
    expect(custody.askNext(["w-a", "w-b", "w-c"], 20)).toBe("w-c");
    expect(custody.isAsked("w-c")).toBe(true);
    expect(custody.isAsked("w-b")).toBe(false);
    // Everyone was asked once: start over (a slow uploader may have recovered).
    expect(custody.askNext(["w-a", "w-b", "w-c"], 30)).toBe("w-a");
    expect(custody.askNext([], 40)).toBeUndefined();
    expect(custody.isAsked("w-a")).toBe(false);
    expect(custody.lacking).toEqual({ round: 5, hash: "h5" });
  });

  it("is overdue only past the timeout since the last ask", () => {
    const custody = new StateCustody();
    expect(custody.overdue(1_000_000, 1)).toBe(false);
    custody.want(1, "h1", "w-a", 100);
    expect(custody.overdue(200, 100)).toBe(false);
    expect(custody.overdue(201, 100)).toBe(true);
    custody.askNext(["w-b"], 201);
    expect(custody.overdue(301, 100)).toBe(false);
  });

  it("a stored round (or a later one) ends the want; an older one does not", () => {
    const custody = new StateCustody();
    custody.want(7, "h7", "w-a", 0);
    expect(custody.stored(6)).toBe(false);
    expect(custody.stored(8)).toBe(true);
    expect(custody.lacking).toBeUndefined();
    custody.want(9, "h9", "w-a", 0);
    custody.forget();
    expect(custody.lacking).toBeUndefined();
  });

  it("a finishing job's stop is taken once, with its deadline until then", () => {
    const custody = new StateCustody();
    expect(custody.takeStop()).toBeUndefined();
    custody.finishing("reached 10 rounds", 5_000);
    expect(custody.stopDeadline).toBe(5_000);
    expect(custody.takeStop()).toBe("reached 10 rounds");
    expect(custody.takeStop()).toBeUndefined();
    expect(custody.stopDeadline).toBeUndefined();
  });
});
