import type { ChunkCodec, Decoded } from "./types.ts";

/** float32 as is: 4 bytes an element, exact. The format of every frame before codecs existed. */
export const dense: ChunkCodec = {
  name: "dense",
  encodedBytes: (elements) => 4 * elements,
  encode: (values) => new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  decode(bytes, elements): Decoded {
    if (bytes.byteLength !== 4 * elements) return { problem: `dense chunk of ${bytes.byteLength} bytes for ${elements} elements` };
    // A view when aligned (transports deliver that; the 20-byte header keeps it), else an aligned copy.
    const values = bytes.byteOffset % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset, elements) : new Float32Array(new Uint8Array(bytes).buffer);
    return { values };
  },
  bound: { relative: 0, ofMax: 0, absolute: 0 },
};
