import http from "node:http";
// An open-loop load generator for the inference API: requests leave on a schedule whatever the
// answers do (a closed loop would slow down with the server and hide its queueing), bounded in
// count and time, on loopback only.

/** One request's fate. */
export type Outcome = { sentAt: number; status: number; ms: number; servedBy: string | undefined; modelRound: number | undefined; rows: number; error?: string };

/** Longest a single request may take before the generator gives up on it (above the server's deadline). */
const REQUEST_TIMEOUT_MS = 20_000;
/** Most requests one run sends: a bound whatever the schedule says. */
const MAX_REQUESTS = 50_000;

/** Requests per second at `t` seconds into the run. */
export type Schedule = (t: number) => number;

/** A ramp from `from` to `to` requests/s over `seconds`. */
export const ramp =
  (from: number, to: number, seconds: number): Schedule =>
  (t) =>
    from + ((to - from) * Math.min(t, seconds)) / seconds;

/**
 * Sends single-row predictions of `input` to `url` on `schedule` for `seconds`; `onTick` runs each
 * second (to kill a tab mid-load). Resolves once every request has an outcome.
 */
export async function runLoad(url: string, input: readonly number[], schedule: Schedule, seconds: number, onTick?: (t: number) => void): Promise<Outcome[]> {
  const body = JSON.stringify({ inputs: [input] });
  const started = performance.now();
  const sent: Promise<Outcome>[] = [];
  let credit = 0;
  let lastSecond = -1;
  let previous = 0;
  for (let t = 0; t < seconds && sent.length < MAX_REQUESTS; t = (performance.now() - started) / 1000) {
    // Credit by the time that really passed: a timer fires late on a busy machine.
    credit += schedule(t) * (t - previous);
    previous = t;
    while (credit >= 1) {
      credit -= 1;
      sent.push(predictOnce(url, body, performance.now()));
    }
    if (Math.floor(t) !== lastSecond) {
      lastSecond = Math.floor(t);
      onTick?.(lastSecond);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Promise.all(sent);
}

async function predictOnce(url: string, body: string, sentAt: number): Promise<Outcome> {
  try {
    const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const ms = performance.now() - sentAt;
    const json = (await response.json()) as { outputs?: number[][]; servedBy?: string; modelRound?: number; error?: string };
    return { sentAt, status: response.status, ms, servedBy: json.servedBy, modelRound: json.modelRound, rows: json.outputs?.length ?? 0, ...(json.error === undefined ? {} : { error: json.error }) };
  } catch (error) {
    return { sentAt, status: 0, ms: performance.now() - sentAt, servedBy: undefined, modelRound: undefined, rows: 0, error: error instanceof Error ? error.message : String(error) };
  }
}

/** How long postRaw waits after the headers before it sends the body. */
const HEADERS_FIRST_MS = 300;
/** Chunks postRaw writes at a time, stopping as soon as the server has answered. */
const RAW_CHUNK_BYTES = 1024 * 1024;

/**
 * POSTs `body` and resolves with the answer even when the server answers before reading it all (a
 * 413 for a declared length over the limit): the body goes out a chunk at a time and stops once the
 * answer is in, where fetch would keep writing into a closed connection and report only the EPIPE.
 */
export function postRaw(url: string, body: Uint8Array, headers: Record<string, string>): Promise<{ status: number; json: { error?: string } }> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const request = http.request(url, { method: "POST", headers: { ...headers, "content-length": String(body.byteLength) } }, (response) => {
      answered = true;
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => {
        request.destroy();
        try {
          resolve({ status: response.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString("utf8")) as { error?: string } });
        } catch (error) {
          reject(error instanceof Error ? error : new Error(String(error)));
        }
      });
    });
    request.on("error", (error) => {
      if (!answered) reject(error);
    });
    request.setTimeout(REQUEST_TIMEOUT_MS, () => request.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    const writeFrom = (offset: number): void => {
      if (answered || offset >= body.byteLength) {
        if (!answered) request.end();
        return;
      }
      const more = request.write(body.subarray(offset, offset + RAW_CHUNK_BYTES));
      if (more) setImmediate(() => writeFrom(offset + RAW_CHUNK_BYTES));
      else request.once("drain", () => writeFrom(offset + RAW_CHUNK_BYTES));
    };
    // A server that refuses by the declared length answers before the body: give it that chance
    // first, so the answer is read before a write into the closed connection fails.
    request.flushHeaders();
    setTimeout(() => writeFrom(0), HEADERS_FIRST_MS);
  });
}

/**
 * A closed loop: `concurrency` clients each send a single-row prediction as soon as their last one
 * is answered, for `seconds`: the most the serving path delivers, not a schedule.
 */
export async function runClosedLoop(url: string, input: readonly number[], concurrency: number, seconds: number): Promise<Outcome[]> {
  const body = JSON.stringify({ inputs: [input] });
  const endAt = performance.now() + seconds * 1000;
  const outcomes: Outcome[] = [];
  const client = async (): Promise<void> => {
    while (performance.now() < endAt && outcomes.length < MAX_REQUESTS) outcomes.push(await predictOnce(url, body, performance.now()));
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  return outcomes;
}
