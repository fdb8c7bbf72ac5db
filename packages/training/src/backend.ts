import * as tf from "@tensorflow/tfjs";

/**
 * Picks the first TF.js backend that works, in order of preference, and says why the others did
 * not, so the worker page can show "WebGPU: no adapter, using WebGL". This module does not load the
 * WebGPU backend (the server must never pull it in); `@crowdtrain/training/browser` does.
 */
export const DEFAULT_BACKENDS = ["webgpu", "webgl", "wasm", "cpu"] as const;

export interface BackendAttempt {
  name: string;
  ok: boolean;
  reason: string;
}

export interface BackendChoice {
  backend: string;
  tried: BackendAttempt[];
}

export class NoBackendError extends Error {
  override name = "NoBackendError";
  constructor(readonly tried: BackendAttempt[]) {
    super(`no usable TF.js backend: ${tried.map((t) => `${t.name}: ${t.reason}`).join("; ")}`);
  }
}

export async function chooseBackend(preferences: readonly string[] = DEFAULT_BACKENDS): Promise<BackendChoice> {
  const tried: BackendAttempt[] = [];
  for (const name of preferences) {
    const attempt = await tryBackend(name);
    tried.push(attempt);
    if (attempt.ok) return { backend: name, tried };
  }
  throw new NoBackendError(tried);
}

/**
 * GPU devices of WebGPU backends this module initialised that were lost since (their `lost` promise
 * resolved: a driver reset, a GPU process crash, GPUDevice.destroy()). A lost device never comes
 * back, but TF.js keeps its backend instance, and setBackend("webgpu") hands that dead instance to
 * the next trainer on the page: a page trainer restarted after a device loss failed again at its
 * first gradient, every time, until its restarts ran out (measured with the lab's loseDevice).
 */
const lostDevices = new WeakSet<object>();

interface DeviceHolder {
  device?: { lost: Promise<unknown> };
}

/** The WebGPU backend instance TF.js holds, if one was initialised. */
const webgpuInstance = (): DeviceHolder | undefined => tf.engine().registry.webgpu as unknown as DeviceHolder | undefined;

/**
 * Replaces a WebGPU backend whose device was lost with a fresh instance of the same factory, so the
 * next setBackend asks for a new adapter and device. The old instance is disposed (its buffers are
 * gone with its device anyway).
 */
function renewLostWebgpu(): void {
  const device = webgpuInstance()?.device;
  if (device === undefined || !lostDevices.has(device)) return;
  const registered = tf.engine().registryFactory.webgpu;
  if (registered === undefined) return;
  tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", registered.factory, registered.priority);
}

async function tryBackend(name: string): Promise<BackendAttempt> {
  const fail = (reason: string): BackendAttempt => ({ name, ok: false, reason });
  let detail = "";
  if (name === "webgpu") {
    renewLostWebgpu();
    // The WebGPU module only registers itself where navigator.gpu exists, so check that first.
    const gpu = (globalThis as { navigator?: { gpu?: GpuLike } }).navigator?.gpu;
    if (gpu === undefined) return fail("this browser has no WebGPU (navigator.gpu is missing)");
    if (tf.findBackendFactory(name) === null) return fail("WebGPU backend not loaded: import @crowdtrain/training/browser");
    const adapter = await gpu.requestAdapter().catch((error: unknown) => {
      detail = errorText(error);
      return null;
    });
    if (adapter === null) return fail(`no WebGPU adapter${detail === "" ? "" : `: ${detail}`}`);
    const fallback = adapter.info?.isFallbackAdapter ?? adapter.isFallbackAdapter;
    detail = fallback === true ? " (software fallback adapter)" : "";
  } else if (tf.findBackendFactory(name) === null) {
    return fail(name === "wasm" ? "not installed" : "not registered");
  }

  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (error) {
    return fail(`initialisation threw: ${errorText(error)}`);
  }
  if (!ok) return fail("initialisation failed (see the console)");
  if (name === "webgpu") {
    const device = webgpuInstance()?.device;
    void device?.lost.then(() => lostDevices.add(device));
  }
  // A backend can initialise and still compute garbage (broken drivers); one tiny op tells.
  const sum = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])));
  try {
    const values = await sum.data();
    if (values[0] !== 4 || values[1] !== 6) return fail(`wrong result from a test op: [${Array.from(values).join(", ")}]`);
  } catch (error) {
    return fail(`test op failed: ${errorText(error)}`);
  } finally {
    sum.dispose();
  }
  return { name, ok: true, reason: `initialised and passed a test op${detail}` };
}

interface GpuAdapterLike {
  info?: { isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
}

interface GpuLike {
  requestAdapter(): Promise<GpuAdapterLike | null>;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
