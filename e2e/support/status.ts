// Reading the server's /api/status from tests (typed by the protocol's Status schema).
import type { Status } from "@crowdtrain/protocol";

/** One status request; the server answers from memory. */
const STATUS_TIMEOUT_MS = 5_000;

export type { Status };

export async function fetchStatus(serverUrl: string): Promise<Status> {
  const response = await fetch(`${serverUrl}/api/status`, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`/api/status answered ${response.status}`);
  return (await response.json()) as Status;
}

/** Latest test accuracy, or 0 before the first evaluation. */
export const latestAccuracy = (status: Status): number => status.accuracy.at(-1)?.accuracy ?? 0;
