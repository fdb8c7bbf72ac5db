/** Model state over HTTP: joiners download the committed state, the round's uploader sends it. */

/** The server answers as soon as it holds the state; it may wait for the uploader first. */
const STATE_FETCH_TIMEOUT_MS = 30_000;
const STATE_UPLOAD_TIMEOUT_MS = 30_000;

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
  const response = await fetch(url, {
    method: "PUT",
    headers: { "content-type": "application/octet-stream", "x-crowdtrain-peer": auth.peerId, authorization: `Bearer ${auth.sessionToken}` },
    body: bytes,
    signal: AbortSignal.timeout(STATE_UPLOAD_TIMEOUT_MS),
  });
  if (!response.ok) throw new Error(`PUT ${new URL(url).pathname}: ${response.status} ${await response.text()}`);
}
