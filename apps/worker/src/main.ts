// The page a volunteer opens: explains, asks to start, picks a backend, and joins the training.
import { startVolunteer, type Volunteer } from "./volunteer.ts";
import { renderStatus } from "./view.ts";

const startButton = document.querySelector<HTMLButtonElement>("#start");
const stopButton = document.querySelector<HTMLButtonElement>("#stop");
if (!startButton || !stopButton) throw new Error("worker page markup is missing #start or #stop");

/** Options for operators and tests, from the query string: ?backends=cpu,webgl  ?page=1  ?name=alice  ?join=TOKEN */
const params = new URLSearchParams(location.search);
const backends = (params.get("backends") ?? "webgpu,webgl,wasm,cpu").split(",").filter(Boolean);
let volunteer: Volunteer | undefined;

startButton.addEventListener("click", () => {
  startButton.disabled = true;
  stopButton.disabled = false;
  startVolunteer({ backends, forcePage: params.get("page") === "1", name: params.get("name") ?? undefined, joinToken: params.get("join") ?? undefined, onStatus: renderStatus }).then(
    (started) => {
      volunteer = started;
      window.crowdtrainWorker = { status: () => started.status() };
      void started.stopped.then(() => {
        stopButton.disabled = true;
        startButton.disabled = false;
      });
    },
    (error: unknown) => {
      renderStatus({ phase: "stopped", lastError: error instanceof Error ? error.message : String(error) });
      console.error("could not start:", error);
      stopButton.disabled = true;
      startButton.disabled = false;
    },
  );
});

stopButton.addEventListener("click", () => {
  stopButton.disabled = true;
  volunteer?.stop("stopped by the volunteer");
});
