import { ImportError, MAX_FEATURE_BYTES, fmt } from "./errors.ts";
import type { Samples } from "./split.ts";

/**
 * The IDX format of the MNIST files (yann.lecun.com/exdb/mnist): two zero bytes, a data type code,
 * the number of dimensions, each dimension as a big-endian u32, then the values row-major. Only
 * unsigned bytes are imported: they are the dataset format's features and labels as they are.
 */

const UBYTE = 0x08;
const TYPE_NAMES: Readonly<Record<number, string>> = { 0x08: "ubyte", 0x09: "sbyte", 0x0b: "short", 0x0c: "int", 0x0d: "float", 0x0e: "double" };
/** A sample of at most 4 dimensions (the manifest's inputShape limit), plus the count. */
const MAX_DIMS = 5;

export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses an IDX file of unsigned bytes; `source` names it in errors. The data is a view, not a copy. */
export function parseIdx(bytes: Uint8Array, source: string): IdxArray {
  const fail = (problem: string): never => {
    throw new ImportError(`${source}: ${problem}`);
  };
  if (bytes.length < 4) fail(`${bytes.length} bytes: too short for an IDX header`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    const hex = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
    fail(`not an IDX file: it starts with ${hex}, an IDX file with 00 00`);
  }
  const type = bytes[2] as number;
  const typeName = TYPE_NAMES[type];
  if (typeName === undefined) fail(`unknown IDX data type 0x${type.toString(16)}`);
  if (type !== UBYTE) fail(`holds ${typeName} values; only unsigned bytes (ubyte, type 0x08) can be imported`);
  const ndims = bytes[3] as number;
  if (ndims < 1 || ndims > MAX_DIMS) fail(`${ndims} dimensions; 1 to ${MAX_DIMS} are supported`);
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes) fail(`truncated header: ${ndims} dimensions need ${headerBytes} bytes, the file has ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, headerBytes);
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i, false));
  const values = dims.reduce((product, dim) => product * dim, 1);
  if (values > MAX_FEATURE_BYTES) fail(`dimensions [${dims.join(", ")}] hold ${fmt(values)} values, more than the import limit of ${fmt(MAX_FEATURE_BYTES)}`);
  const expected = headerBytes + values;
  if (bytes.length < expected) fail(`truncated: dimensions [${dims.join(", ")}] need ${fmt(expected)} bytes, the file has ${fmt(bytes.length)}`);
  if (bytes.length > expected) fail(`${fmt(bytes.length - expected)} bytes after the data of dimensions [${dims.join(", ")}]`);
  return { dims, data: bytes.subarray(headerBytes, expected) };
}

/** An images file and a labels file as samples, with the shape of one sample. */
export function idxSamples(images: IdxArray, labels: IdxArray, names: { images: string; labels: string }): { samples: Samples; inputShape: number[] } {
  const [count = 0, ...sampleDims] = images.dims;
  if (sampleDims.length === 0) throw new ImportError(`${names.images}: 1 dimension; an images file has the count, then each sample's dimensions (MNIST: [N, 28, 28])`);
  if (sampleDims.some((dim) => dim === 0)) throw new ImportError(`${names.images}: a sample dimension is 0 in [${images.dims.join(", ")}]`);
  if (labels.dims.length !== 1) throw new ImportError(`${names.labels}: ${labels.dims.length} dimensions [${labels.dims.join(", ")}]; a labels file has one, the count`);
  if (labels.dims[0] !== count) throw new ImportError(`${names.images} holds ${fmt(count)} samples but ${names.labels} ${fmt(labels.dims[0] ?? 0)} labels`);
  // [H, W] gets a channel, [H, W, 1], so image models (cnn) can use it; other ranks stay as they are.
  const inputShape = sampleDims.length === 2 ? [...sampleDims, 1] : sampleDims;
  const featureBytes = sampleDims.reduce((product, dim) => product * dim, 1);
  return { samples: { featureBytes, features: images.data, labels: labels.data }, inputShape };
}

/** Classes = largest label + 1 over all given label sets (labels are class ids already). */
export function idxClasses(labelSets: readonly Uint8Array[]): number {
  let max = 0;
  for (const labels of labelSets) for (const label of labels) if (label > max) max = label;
  if (max === 0) throw new ImportError("every label is 0: a classification dataset needs at least 2 classes");
  return max + 1;
}
