// Time-limited TURN credentials per worker, in coturn's `use-auth-secret` scheme (the "TURN REST
// API" draft): the operator's TURN server and this server share a secret; the username is
// `<expiry unix seconds>:<peer id>` and the password is base64(HMAC-SHA1(secret, username)). The
// TURN server checks both without asking us, and a leaked credential dies at its expiry.
import { createHmac } from "node:crypto";
import type { IceServer } from "@crowdtrain/protocol";

/** How long a minted credential lasts: a worker asks again for every new peer (each welcome). */
export const DEFAULT_TURN_TTL_S = 24 * 3_600;
/** Shorter secrets are guessable offline from one captured credential. */
export const MIN_TURN_SECRET_LENGTH = 16;

export type TurnOptions = {
  /** turn: or turns: URLs of the operator's TURN server. */
  urls: string[];
  /** coturn's static-auth-secret. */
  secret: string;
  ttlSeconds?: number;
};

export class TurnConfigError extends Error {
  override name = "TurnConfigError";
}

export function checkTurnOptions(turn: TurnOptions): TurnOptions {
  if (turn.urls.length === 0) throw new TurnConfigError("--turn-url: give at least one turn: or turns: URL");
  for (const url of turn.urls) {
    if (!/^turns?:[^\s/]+$/.test(url.split("?")[0] ?? "")) throw new TurnConfigError(`--turn-url: ${JSON.stringify(url)} is not a turn: or turns: URL like turn:turn.example.org:3478`);
  }
  if (turn.secret.length < MIN_TURN_SECRET_LENGTH) throw new TurnConfigError(`--turn-secret must be at least ${MIN_TURN_SECRET_LENGTH} characters`);
  return turn;
}

/** One worker's TURN entry for /api/config, valid until now + ttl. */
export function mintTurnCredentials(turn: TurnOptions, peerId: string, nowMs: number): IceServer {
  const expiry = Math.floor(nowMs / 1000) + (turn.ttlSeconds ?? DEFAULT_TURN_TTL_S);
  const username = `${expiry}:${peerId}`;
  return { urls: turn.urls, username, credential: createHmac("sha1", turn.secret).update(username).digest("base64") };
}
