import { MAX_MEMORY_MIB } from "@crowdtrain/protocol";

/**
 * `?memoryMiB=` of the volunteer page: the memory this tab lends, in MiB, or undefined when the URL
 * does not say. Anything but a whole number from 1 to MAX_MEMORY_MIB is refused with the reason, so a
 * typo shows on the page instead of joining with no budget at all.
 */
export function parseMemoryMiB(text: string | null): number | undefined {
  if (text === null) return undefined;
  // Decimal digits only: Number() would also take "0x400", "1e3" and " 12 ".
  const value = /^[0-9]+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(value) || value < 1 || value > MAX_MEMORY_MIB) {
    throw new RangeError(`?memoryMiB=${text} is not a whole number of MiB from 1 to ${MAX_MEMORY_MIB}`);
  }
  return value;
}
