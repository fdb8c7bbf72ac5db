/**
 * ICE servers handed to browsers through /api/config.
 *
 * The default is none: Crowdtrain never contacts a public STUN/TURN host on its own (DESIGN.md §3).
 * An operator who needs one (peers behind NAT) configures their own with CROWDTRAIN_ICE_SERVERS.
 */

/** The shape of RTCIceServer that we accept and pass on unchanged. */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

export const ICE_SERVERS_ENV = "CROWDTRAIN_ICE_SERVERS";

const ICE_URL = /^(stun|stuns|turn|turns):\S+$/;

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
  if (!Array.isArray(value)) throw new IceConfigError(`${source} must be a JSON array of ICE servers, got ${typeof value}`);
  return value.map((entry: unknown, index) => validateEntry(entry, `${source}[${index}]`));
}

function validateEntry(entry: unknown, where: string): IceServer {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new IceConfigError(`${where} must be an object like {"urls":"turn:host:3478","username":"u","credential":"p"}`);
  }
  const { urls, username, credential, ...rest } = entry as Record<string, unknown>;
  const unknownKeys = Object.keys(rest);
  if (unknownKeys.length > 0) throw new IceConfigError(`${where} has unknown keys: ${unknownKeys.join(", ")}`);
  const list = typeof urls === "string" ? [urls] : urls;
  if (!Array.isArray(list) || list.length === 0) throw new IceConfigError(`${where}.urls must be a URL string or a non-empty array of them`);
  for (const url of list) {
    if (typeof url !== "string" || !ICE_URL.test(url)) {
      throw new IceConfigError(`${where}.urls has ${JSON.stringify(url)}; expected stun:, stuns:, turn: or turns: URLs`);
    }
  }
  const server: IceServer = { urls: urls as string | string[] };
  if (username !== undefined) server.username = requireString(username, `${where}.username`);
  if (credential !== undefined) server.credential = requireString(credential, `${where}.credential`);
  return server;
}

function requireString(value: unknown, where: string): string {
  if (typeof value !== "string") throw new IceConfigError(`${where} must be a string`);
  return value;
}
