/**
 * Browser entry: registers the WebGPU backend (a side effect of importing it) and re-exports the
 * backend chooser. Only worker/page code imports this; the server never does.
 */
import "@tensorflow/tfjs-backend-webgpu";

export { chooseBackend, DEFAULT_BACKENDS, NoBackendError, type BackendAttempt, type BackendChoice } from "../backend.ts";
