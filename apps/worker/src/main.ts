// Placeholder worker page: picks the best tfjs backend this browser offers and says why.
// The real worker (consent, training, all-reduce) replaces this.
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-webgpu";

interface Choice {
  backend: string;
  reasons: string[];
}

/** Why WebGPU cannot be used here, or null when an adapter is available. */
async function webgpuBlocker(): Promise<string | null> {
  const gpu = navigator.gpu as GPU | undefined;
  if (gpu === undefined) {
    return isSecureContext
      ? "webgpu: this browser has no WebGPU (navigator.gpu is missing)"
      : "webgpu: browsers allow WebGPU only on https:// or localhost pages";
  }
  const adapter = await gpu.requestAdapter();
  return adapter === null ? "webgpu: no GPU adapter available" : null;
}

async function chooseBackend(): Promise<Choice> {
  const reasons: string[] = [];
  const blocker = await webgpuBlocker();
  if (blocker !== null) reasons.push(blocker);
  else if (await tf.setBackend("webgpu")) return { backend: "webgpu", reasons: [...reasons, "webgpu: adapter found and tfjs initialised"] };
  else reasons.push("webgpu: tfjs could not initialise the backend");
  if (await tf.setBackend("webgl")) return { backend: "webgl", reasons: [...reasons, "webgl: available"] };
  reasons.push("webgl: tfjs could not initialise the backend", "wasm: not bundled");
  if (await tf.setBackend("cpu")) return { backend: "cpu", reasons: [...reasons, "cpu: always available, slowest"] };
  throw new Error("no tfjs backend could be initialised, not even cpu");
}

const startButton = document.querySelector<HTMLButtonElement>("#start");
const backendLine = document.querySelector<HTMLElement>("#backend");
const reasonList = document.querySelector<HTMLElement>("#reasons");
if (!startButton || !backendLine || !reasonList) throw new Error("worker page markup is missing #start, #backend or #reasons");

startButton.addEventListener("click", () => {
  startButton.disabled = true;
  backendLine.textContent = "checking…";
  chooseBackend().then(
    ({ backend, reasons }) => {
      backendLine.textContent = `Backend: ${backend}`;
      reasonList.replaceChildren(...reasons.map((reason) => Object.assign(document.createElement("li"), { textContent: reason })));
    },
    (error: unknown) => {
      backendLine.textContent = `No backend: ${error instanceof Error ? error.message : String(error)}`;
      console.error(error);
    },
  );
});
