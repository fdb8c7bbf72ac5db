import { parseJob } from "@crowdtrain/protocol";
import { describe, expect, it } from "vitest";
import { contributionDigest, hashState, jobStateHasher, layerHashes, nobleSha256, pipelineStateHash, type OptimizerState } from "../src/index.ts";
import { nodeSha256 } from "../src/node/index.ts";
import { seededFloats } from "./helpers.ts";

const adam = (n: number): OptimizerState => ({ kind: "adam", step: 7, scalars: [0.9 ** 7, 0.999 ** 7], buffers: [seededFloats(n, 4), seededFloats(n, 5)] });

describe("nodeSha256", () => {
  it("is SHA-256: the standard test vectors, over parts split anywhere", () => {
    const abc = new TextEncoder().encode("abc");
    const expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    expect(nodeSha256([abc])).toBe(expected);
    expect(nodeSha256([abc.subarray(0, 1), new Uint8Array(0), abc.subarray(1)])).toBe(expected);
    expect(nodeSha256([])).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("gives every hash the same hex as the pure-JS default, views with offsets included", () => {
    const backing = seededFloats(5_003, 1);
    // A view that starts past its buffer's first byte: the hashes must read only the view.
    const weights = backing.subarray(3);
    const optimizer = adam(weights.length);
    expect(hashState(weights, optimizer, nodeSha256)).toBe(hashState(weights, optimizer));
    expect(hashState(weights, optimizer, nodeSha256)).toBe(hashState(weights, optimizer, nobleSha256));
    expect(contributionDigest(weights, nodeSha256)).toBe(contributionDigest(weights));
    const layers = [1_000, 3_000, 1_000];
    expect(layerHashes(weights, optimizer, layers, nodeSha256)).toEqual(layerHashes(weights, optimizer, layers));
    expect(pipelineStateHash(weights, optimizer, layers, nodeSha256)).toBe(pipelineStateHash(weights, optimizer, layers));
  });

  it("hashes a job's state as the workers do, for whole and pipelined jobs", () => {
    for (const stages of [1, 2]) {
      const job = parseJob({ name: "sha", dataset: "mnist", model: { kind: "mlp", hidden: [8] }, optimizer: { kind: "sgd", learningRate: 0.1 }, batchSize: 8, rounds: 1, parallelism: { stages, microBatches: 2 } });
      const params = 784 * 8 + 8 + 8 * 10 + 10;
      const weights = seededFloats(params, 2);
      const optimizer = adam(params);
      expect(jobStateHasher(job, [28, 28, 1], 10, nodeSha256)(weights, optimizer)).toBe(jobStateHasher(job, [28, 28, 1], 10)(weights, optimizer));
    }
  });
});
