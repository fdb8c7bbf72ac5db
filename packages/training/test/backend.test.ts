import * as tf from "@tensorflow/tfjs";
import { afterAll, describe, expect, it } from "vitest";
import { chooseBackend, NoBackendError } from "../src/index.ts";

afterAll(async () => {
  await tf.setBackend("cpu");
});

describe("chooseBackend (Node, main entry)", () => {
  it("falls through to cpu and says why each other choice was skipped", async () => {
    const choice = await chooseBackend(["webgpu", "wasm", "cpu"]);
    expect(choice.backend).toBe("cpu");
    expect(tf.getBackend()).toBe("cpu");
    expect(choice.tried).toEqual([
      { name: "webgpu", ok: false, reason: "this browser has no WebGPU (navigator.gpu is missing)" },
      { name: "wasm", ok: false, reason: "not installed" },
      { name: "cpu", ok: true, reason: "initialised and passed a test op" },
    ]);
  });

  it("throws a NoBackendError listing every attempt when none works", async () => {
    const error = await chooseBackend(["wasm", "nonesuch"]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NoBackendError);
    expect((error as NoBackendError).tried.map((t) => t.reason)).toEqual(["not installed", "not registered"]);
    expect((error as Error).message).toBe("no usable TF.js backend: wasm: not installed; nonesuch: not registered");
  });
});
