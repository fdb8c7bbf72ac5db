// The page a volunteer opens: explains, asks to start, picks a backend, and joins the training.
import { startVolunteer, type Volunteer } from "./volunteer.ts";
import { insecureNotice } from "./page/job-facts.ts";
import { startJobPanel } from "./page/job-panel.ts";
import { parseMemoryMiB } from "./page/url-options.ts";
import { renderStatus } from "./view.ts";

const startButton = document.querySelector<HTMLButtonElement>("#start");
const stopButton = document.querySelector<HTMLButtonElement>("#stop");
if (!startButton || !stopButton) throw new Error("worker page markup is missing #start or #stop");

/**
 * Options for operators and tests, from the query string: ?backends=cpu,webgl  ?page=1  ?name=alice
 * ?join=TOKEN  ?role=server (lend this tab to answering prediction requests only, never training)
 * ?memoryMiB=2048 (the memory this tab lends: a job whose model needs more in one tab is refused at join)
 */
const params = new URLSearchParams(location.search);
const backends = (params.get("backends") ?? "webgpu,webgl,wasm,cpu").split(",").filter(Boolean);
let volunteer: Volunteer | undefined;

// WebGPU needs a secure page: say so (with the https address) rather than leave a slow fallback unexplained.
const notice = insecureNotice({ isSecureContext, href: location.href });
if (notice !== undefined) {
  const box = document.getElementById("insecure");
  const link = document.getElementById("insecure-link");
  document.getElementById("insecure-text")?.replaceChildren(notice.text);
  if (link !== null) Object.assign(link, { href: notice.httpsUrl, textContent: notice.httpsUrl });
  if (box !== null) box.hidden = false;
}

// The job panel, for the page's whole life: what the tab is part of, and what it gave.
const panel = startJobPanel(() => {
  const status = volunteer?.status();
  return { peerId: status?.peerId, roundsDone: status?.roundsDone ?? 0, samplesCommitted: status?.samplesCommitted ?? 0 };
});
/**
 * The page draws the latest status once a frame at most: a round brings a dozen changes, and each
 * redraw costs the tab (and, with SwiftShader, the GPU process its compute shares). A hidden tab
 * draws nothing until it is shown again, then the latest.
 */
let unshown: Parameters<typeof renderStatus>[0] | undefined;
const onStatus: typeof renderStatus = (status) => {
  if (unshown === undefined) {
    requestAnimationFrame(() => {
      const latest = unshown ?? {};
      unshown = undefined;
      renderStatus(latest);
      panel.showContribution();
    });
  }
  unshown = { ...unshown, ...status };
};

startButton.addEventListener("click", () => {
  startButton.disabled = true;
  stopButton.disabled = false;
  // A bad ?memoryMiB= rejects here, so its reason shows like any failure to start.
  Promise.resolve()
    .then(() =>
      startVolunteer({
        backends,
        forcePage: params.get("page") === "1",
        name: params.get("name") ?? undefined,
        joinToken: params.get("join") ?? undefined,
        role: params.get("role") === "server" ? "server" : undefined,
        memoryMiB: parseMemoryMiB(params.get("memoryMiB")),
        onStatus,
      }),
    )
    .then(
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
