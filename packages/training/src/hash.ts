/**
 * Weights hash checked by the coordinator every round: every peer must report the same string for
 * the same bits. Not cryptographic; it detects divergence. Two MurmurHash3-style (x86, 32-bit) lanes
 * with different seeds and constants over the float32 words give 64 bits, a word at a time with
 * Math.imul (exact 32-bit integer math, identical on every engine), so ~100k
 * floats hash in well under a millisecond. Words are read in platform byte order, which is
 * little-endian on every browser and Node target we run on.
 */
export function hashWeights(flat: Float32Array): string {
  const words = new Uint32Array(flat.buffer, flat.byteOffset, flat.length);
  let h1 = 0x243f6a88;
  let h2 = 0x85a308d3;
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as number;
    let k1 = Math.imul(word, 0xcc9e2d51);
    k1 = Math.imul((k1 << 15) | (k1 >>> 17), 0x1b873593);
    h1 ^= k1;
    h1 = (Math.imul((h1 << 13) | (h1 >>> 19), 5) + 0xe6546b64) | 0;
    let k2 = Math.imul(word, 0x85ebca77);
    k2 = Math.imul((k2 << 17) | (k2 >>> 15), 0xc2b2ae3d);
    h2 ^= k2;
    h2 = (Math.imul((h2 << 11) | (h2 >>> 21), 9) + 0x27d4eb2f) | 0;
  }
  return hex(fmix(h1 ^ words.length)) + hex(fmix(h2 ^ words.length ^ 0x5bd1e995));
}

function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const hex = (x: number): string => x.toString(16).padStart(8, "0");
