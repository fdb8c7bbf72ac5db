// WebGPU smoke check: the page gets an adapter, tfjs runs on the webgpu backend, and its numbers
// match the cpu backend's. Fails loudly when WebGPU is missing instead of falling back.
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";
import type { AdapterReport, WebGpuCheck } from "../lab-api.ts";
import { fillPattern } from "./pattern.ts";

/** relu(A·B) with A: M×K, B: K×N — small, because SwiftShader runs ~0.3 GFLOP/s. */
const M = 64;
const K = 48;
const N = 32;

interface Computed {
  backend: string;
  values: Float32Array;
  sum: number;
  ms: number;
}

async function adapterReport(): Promise<AdapterReport> {
  const gpu = navigator.gpu as GPU | undefined;
  if (gpu === undefined) {
    throw new Error(
      `WebGPU unavailable: navigator.gpu is missing (secure context: ${String(isSecureContext)}; ` +
        "it needs https:// or localhost, and on this Chromium --enable-unsafe-webgpu)",
    );
  }
  const adapter = await gpu.requestAdapter();
  if (adapter === null) throw new Error("WebGPU unavailable: navigator.gpu.requestAdapter() returned no adapter");
  const { vendor, architecture, device, description, isFallbackAdapter } = adapter.info;
  return { vendor, architecture, device, description, isFallbackAdapter };
}

async function useBackend(backend: "webgpu" | "cpu"): Promise<void> {
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs could not initialise its ${backend} backend`);
  await tf.ready();
}

async function compute(backend: "webgpu" | "cpu"): Promise<Computed> {
  await useBackend(backend);
  const active = tf.getBackend();
  const started = performance.now();
  const [y, total] = tf.tidy(() => {
    const a = tf.tensor2d(fillPattern(new Float32Array(M * K), 1), [M, K]);
    const b = tf.tensor2d(fillPattern(new Float32Array(K * N), 2), [K, N]);
    const relu = tf.relu(tf.matMul(a, b));
    return [relu, tf.sum(relu)];
  });
  try {
    const values = (await y.data()) as Float32Array;
    const sum = (await total.data())[0] ?? Number.NaN;
    return { backend: active, values, sum, ms: performance.now() - started };
  } finally {
    y.dispose();
    total.dispose();
  }
}

export async function webgpuCheck(): Promise<WebGpuCheck> {
  const adapter = await adapterReport();
  // tf.memory() needs an initialised backend; the tensor count is engine-wide, across backends.
  await useBackend("webgpu");
  const tensorsBefore = tf.memory().numTensors;
  const gpu = await compute("webgpu");
  const cpu = await compute("cpu");
  let maxAbsDiff = 0;
  let maxAbs = 0;
  cpu.values.forEach((expected, i) => {
    maxAbsDiff = Math.max(maxAbsDiff, Math.abs((gpu.values[i] ?? Number.NaN) - expected));
    maxAbs = Math.max(maxAbs, Math.abs(expected));
  });
  if (gpu.values.length !== cpu.values.length) maxAbsDiff = Number.POSITIVE_INFINITY;
  return {
    backend: gpu.backend,
    adapter,
    count: cpu.values.length,
    gpuSum: gpu.sum,
    cpuSum: cpu.sum,
    maxAbsDiff,
    maxAbs,
    leakedTensors: tf.memory().numTensors - tensorsBefore,
    gpuMs: gpu.ms,
  };
}
