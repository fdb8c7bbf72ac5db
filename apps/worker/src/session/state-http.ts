/** Model state over HTTP: joiners download the committed state, the round's uploader sends it. */

/** The server answers as soon as it holds the state; it may wait for the uploader first. */
const STATE_FETCH_TIMEOUT_MS = 30_000;
const STATE_UPLOAD_TIMEOUT_MS = 30_000;
/** A busy server (503) is asked at most this many times in all. */
const MAX_UPLOAD_TRIES = 5;
/** Waits between tries: the server's Retry-After, capped; this when it names none. */
const MAX_RETRY_WAIT_MS = 5_000;
const DEFAULT_RETRY_WAIT_MS = 1_000;

export async function fetchState(origin: string, round: number): Promise<ArrayBuffer> {
  const response = await fetch(`${origin}/api/state?round=${round}`, { signal: AbortSignal.timeout(STATE_FETCH_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`GET /api/state?round=${round}: ${response.status} ${await response.text()}`);
  return response.arrayBuffer();
}

/** Who the upload acts for: the server accepts a state only from the member it asked for it. */
export type UploadAuth = { peerId: string; sessionToken: string };

/** A spot check: the contribution we committed to, as float32 words (PUT /api/contribution/<round>). */
export async function uploadContribution(origin: string, round: number, gradient: Float32Array, auth: UploadAuth): Promise<void> {
  await put(`${origin}/api/contribution/${round}`, gradient.slice().buffer, auth);
}

export async function uploadState(origin: string, round: number, bytes: ArrayBuffer, auth: UploadAuth): Promise<void> {
  await put(`${origin}/api/state/${round}`, bytes, auth);
}

async function put(url: string, bytes: ArrayBuffer, auth: UploadAuth): Promise<void> {
  // One deadline for all tries: a busy server (503, Retry-After) is asked again until it passes.
  const signal = AbortSignal.timeout(STATE_UPLOAD_TIMEOUT_MS);
  for (let attempt = 1; ; attempt++) {
    const response = await fetch(url, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "x-crowdtrain-peer": auth.peerId, authorization: `Bearer ${auth.sessionToken}` },
      body: bytes,
      signal,
    });
    if (response.ok) return;
    const text = await response.text();
    const retryMs = retryAfterMs(response, attempt);
    if (retryMs === undefined) throw new Error(`PUT ${new URL(url).pathname}: ${response.status} ${text}`);
    await sleep(retryMs, signal);
  }
}

/** How long to wait before trying again, or undefined when the answer is final. */
function retryAfterMs(response: { status: number; headers: { get(name: string): string | null } }, attempt: number): number | undefined {
  if (response.status !== 503 || attempt >= MAX_UPLOAD_TRIES) return undefined;
  const seconds = Number(response.headers.get("retry-after"));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, MAX_RETRY_WAIT_MS) : DEFAULT_RETRY_WAIT_MS;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason as Error);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
