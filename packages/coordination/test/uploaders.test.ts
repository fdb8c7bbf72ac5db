import { describe, expect, it } from "vitest";
import { UploaderChoice } from "../src/uploaders.ts";

/** One committed round: `uploader` reports at `reportAt`, its upload lands at `landAt` (or never). */
function round(choice: UploaderChoice, n: number, order: string[], times: { reportAt: number; landAt?: number }): string {
  const uploader = choice.choose(n, order);
  choice.reported(n, uploader, times.reportAt);
  if (times.landAt !== undefined) choice.landed(n, uploader, times.landAt);
  choice.committed(n);
  return uploader;
}

describe("UploaderChoice", () => {
  it("tries each unmeasured member once in plan order, then keeps the one whose upload landed soonest", () => {
    const choice = new UploaderChoice();
    const order = ["a", "b", "c"];
    expect(round(choice, 1, order, { reportAt: 0, landAt: 300 })).toBe("a");
    expect(round(choice, 2, order, { reportAt: 1000, landAt: 1050 })).toBe("b");
    expect(round(choice, 3, order, { reportAt: 2000, landAt: 2200 })).toBe("c");
    expect(choice.choose(4, order)).toBe("b");
    // A newcomer is tried before every measured member.
    expect(choice.choose(5, ["a", "b", "c", "d"])).toBe("d");
  });

  it("an upload that has not landed when the next round commits ranks its member last; a late landing measures it again", () => {
    const choice = new UploaderChoice();
    const order = ["slow", "fast"];
    expect(round(choice, 1, order, { reportAt: 0 })).toBe("slow"); // never lands in time
    expect(round(choice, 2, order, { reportAt: 1000, landAt: 1400 })).toBe("fast");
    // Round 2's commit found round 1's upload missing: "slow" is late, "fast" measured.
    expect(choice.choose(3, order)).toBe("fast");
    expect(choice.choose(3, ["slow"])).toBe("slow"); // alone, it is still the uploader
    // The late upload of round 1 lands after all: forgiven only if it was still awaited (it was not).
    choice.landed(1, "slow", 5000);
    expect(choice.choose(4, order)).toBe("fast");
  });

  it("a late upload still awaited (before the next commit) is measured as it lands", () => {
    const choice = new UploaderChoice();
    expect(round(choice, 1, ["a", "b"], { reportAt: 0 })).toBe("a");
    // Round 2 opens before round 1's upload lands; it lands 900 ms after the report, before round 2 commits.
    expect(choice.choose(2, ["a", "b"])).toBe("b");
    choice.landed(1, "a", 900);
    choice.reported(2, "b", 1000);
    choice.landed(2, "b", 2500);
    choice.committed(2);
    expect(choice.choose(3, ["a", "b"])).toBe("a"); // 900 ms beats 1,500 ms
  });

  it("an aborted round's upload is not held against its uploader; a departed member is forgotten", () => {
    const choice = new UploaderChoice();
    expect(choice.choose(1, ["a", "b"])).toBe("a");
    choice.reported(1, "a", 0); // aborted: never committed, never landed
    expect(choice.choose(1, ["a", "b"])).toBe("a"); // the retry of round 1: "a" still unmeasured
    choice.reported(1, "a", 100);
    choice.landed(1, "a", 5100);
    choice.committed(1);
    expect(round(choice, 2, ["a", "b"], { reportAt: 6000, landAt: 6100 })).toBe("b");
    choice.forget("b");
    expect(choice.choose(3, ["a", "b"])).toBe("b"); // unmeasured again
    expect(() => choice.choose(4, [])).toThrow(RangeError);
  });

  it("only the round's own uploader is measured", () => {
    const choice = new UploaderChoice();
    const uploader = choice.choose(1, ["a", "b"]);
    choice.reported(1, "b", 0);
    choice.landed(1, "b", 10);
    choice.reported(1, uploader, 0);
    choice.committed(1);
    expect(round(choice, 2, ["a", "b"], { reportAt: 100, landAt: 150 })).toBe("b");
    // "a" never landed round 1's upload: late, so "b" (50 ms) uploads.
    expect(choice.choose(3, ["a", "b"])).toBe("b");
  });
});
