import { basename } from "node:path";
import { ImportError } from "./errors.ts";
import { idxClasses, idxSamples, parseIdx } from "./idx-format.ts";
import { readInputFile } from "./read-input.ts";
import { holdOut, shuffleEach } from "./split.ts";
import type { Imported } from "./write-dataset.ts";

/** Importing MNIST-format files: IDX parsing is in idx-format.ts, this reads the files and splits. */

export const IDX_IMPORTER_VERSION = 1;

export interface IdxInput {
  trainImages: string;
  trainLabels: string;
  /** Both or neither; without them `testFraction` of the train files is held out. */
  test?: { images: string; labels: string };
  testFraction: number;
  seed: number;
}

async function readPair(imagesPath: string, labelsPath: string) {
  const [images, labels] = await Promise.all([readInputFile(imagesPath), readInputFile(labelsPath)]);
  return idxSamples(parseIdx(images, imagesPath), parseIdx(labels, labelsPath), { images: imagesPath, labels: labelsPath });
}

export async function importIdx(input: IdxInput): Promise<Imported> {
  const train = await readPair(input.trainImages, input.trainLabels);
  const test = input.test === undefined ? undefined : await readPair(input.test.images, input.test.labels);
  if (test !== undefined && test.inputShape.join("x") !== train.inputShape.join("x")) {
    throw new ImportError(`test samples are [${test.inputShape.join(", ")}], train samples [${train.inputShape.join(", ")}]`);
  }
  const classes = idxClasses(test === undefined ? [train.samples.labels] : [train.samples.labels, test.samples.labels]);
  const plan = test === undefined ? holdOut(train.samples, input.testFraction, input.seed) : shuffleEach(train.samples, test.samples, input.seed);
  const files = [input.trainImages, input.trainLabels, ...(input.test === undefined ? [] : [input.test.images, input.test.labels])].map((f) => basename(f));
  const split = input.test === undefined ? `test fraction ${input.testFraction} held out` : "test from the test files";
  return {
    spec: {
      source: `idx ${files.join(" + ")}, uint8 as is, ${split}, shuffle mulberry32 seed 0x${input.seed.toString(16)}, importer idx ${IDX_IMPORTER_VERSION}`,
      inputShape: train.inputShape,
      classes,
      featureScale: 1 / 255,
    },
    plan,
    summary: [`labels are class ids 0..${classes - 1} as in the files`],
  };
}
