import { describe, expect, it } from "vitest";
import { MAX_MEMORY_MIB } from "@crowdtrain/protocol";
import { parseMemoryMiB } from "../src/page/url-options.ts";

describe("?memoryMiB=", () => {
  it("is the MiB a tab lends, or undefined when the URL does not say", () => {
    expect(parseMemoryMiB(null)).toBeUndefined();
    expect(parseMemoryMiB("512")).toBe(512);
    expect(parseMemoryMiB(String(MAX_MEMORY_MIB))).toBe(MAX_MEMORY_MIB);
  });

  it("refuses anything but a whole number of MiB in range, saying what it got", () => {
    for (const bad of ["", " ", "0", "-5", "1.5", "2GB", "Infinity", "0x400", "1e3", " 12", String(MAX_MEMORY_MIB + 1)]) {
      expect(() => parseMemoryMiB(bad), bad).toThrow(`?memoryMiB=${bad} is not a whole number of MiB`);
    }
  });
});
