import { expect, test } from "../fixtures.ts";

/** |webgpu - cpu| allowed per element of relu(A·B); sums of 48 products of values in [-1, 1). */
const MAX_ABS_DIFF = 1e-4;

test("a worker page runs tfjs on a WebGPU adapter and matches the cpu backend", async ({ openWorkers }, testInfo) => {
  const [page] = await openWorkers(1, "/lab.html");
  const check = await page!.evaluate(() => window.crowdtrainLab.webgpuCheck());
  testInfo.annotations.push({ type: "webgpu", description: JSON.stringify(check) });

  expect(check.backend).toBe("webgpu");
  expect(check.count).toBe(64 * 32);
  expect(check.maxAbs).toBeGreaterThan(0);
  expect(check.maxAbsDiff).toBeLessThan(MAX_ABS_DIFF);
  expect(Math.abs(check.gpuSum - check.cpuSum)).toBeLessThan(MAX_ABS_DIFF * check.count);
  expect(check.leakedTensors).toBe(0);
});
