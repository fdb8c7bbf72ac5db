// The operator's side of /api/admin: the token (kept in sessionStorage, so it is gone with the
// tab) and the requests, whose failures come back as values to show.
import { AdminAnswerSchema, parseAdminBody, type AdminAnswer, type AdminStopBody, type AdminTargetBody } from "@crowdtrain/protocol";

const TOKEN_KEY = "crowdtrain.adminToken";
/** An admin request answers from memory; this long means the server is gone. */
const REQUEST_TIMEOUT_MS = 10_000;

export function loadToken(storage: Storage | undefined = safeSessionStorage()): string | undefined {
  return storage?.getItem(TOKEN_KEY) ?? undefined;
}

export function saveToken(token: string | undefined, storage: Storage | undefined = safeSessionStorage()): void {
  if (storage === undefined) return;
  if (token === undefined) storage.removeItem(TOKEN_KEY);
  else storage.setItem(TOKEN_KEY, token);
}

/** sessionStorage, or undefined where the browser refuses it (then the token lives only in memory). */
function safeSessionStorage(): Storage | undefined {
  try {
    return window.sessionStorage;
  } catch (error) {
    console.warn("sessionStorage unavailable; the admin token will not survive a reload:", error);
    return undefined;
  }
}

export type AdminAction =
  | { kind: "check" }
  | { kind: "pause" }
  | { kind: "resume" }
  | { kind: "stop"; body: AdminStopBody }
  | { kind: "target"; body: AdminTargetBody };

export type AdminResult = { ok: true; answer: AdminAnswer } | { ok: false; httpStatus: number | undefined; error: string };

export async function adminRequest(token: string, action: AdminAction, fetcher: typeof fetch = fetch): Promise<AdminResult> {
  const init: RequestInit = {
    method: action.kind === "check" ? "GET" : "POST",
    headers: { authorization: `Bearer ${token}`, ...("body" in action ? { "content-type": "application/json" } : {}) },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  };
  if ("body" in action) init.body = JSON.stringify(action.body);
  let response: Response;
  try {
    response = await fetcher(`/api/admin/${action.kind}`, init);
  } catch (error) {
    return { ok: false, httpStatus: undefined, error: `the server did not answer: ${error instanceof Error ? error.message : String(error)}` };
  }
  let json: unknown;
  try {
    json = await response.json();
  } catch (error) {
    return { ok: false, httpStatus: response.status, error: `HTTP ${response.status} without a JSON answer (${String(error)})` };
  }
  if (!response.ok) {
    const error = typeof json === "object" && json !== null && "error" in json && typeof json.error === "string" ? json.error : `HTTP ${response.status}`;
    return { ok: false, httpStatus: response.status, error };
  }
  const parsed = parseAdminBody(AdminAnswerSchema, json);
  return parsed.ok ? { ok: true, answer: parsed.value } : { ok: false, httpStatus: response.status, error: `unexpected answer: ${parsed.problem}` };
}
