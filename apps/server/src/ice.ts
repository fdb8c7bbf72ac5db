import { checkIceServers, type IceServer } from "@crowdtrain/protocol";

/**
 * ICE servers handed to browsers through /api/config.
 *
 * The default is none: Crowdtrain never contacts a public STUN/TURN host on its own (DESIGN.md §3).
 * An operator who needs one (peers behind NAT) configures their own with CROWDTRAIN_ICE_SERVERS.
 * The shape is the protocol's (`IceServerSchema`), the same one the worker parses /api/config with.
 */

export type { IceServer } from "@crowdtrain/protocol";

export const ICE_SERVERS_ENV = "CROWDTRAIN_ICE_SERVERS";

/** Thrown for a bad ICE server list; the message names the source and the offending entry. */
export class IceConfigError extends Error {
  override name = "IceConfigError";
}

/** Parses and validates a JSON array of RTCIceServer-like objects. `source` names where it came from. */
export function parseIceServers(json: string, source: string): IceServer[] {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new IceConfigError(`${source} is not valid JSON (${(error as Error).message}); expected e.g. [{"urls":"stun:stun.example.org:3478"}]`);
  }
  return validateIceServers(value, source);
}

export function validateIceServers(value: unknown, source: string): IceServer[] {
  const checked = checkIceServers(value, source);
  if (!checked.ok) throw new IceConfigError(checked.problem);
  return checked.value;
}
