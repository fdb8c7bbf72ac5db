import type { SignallingConfig } from "@crowdtrain/protocol";
import type express from "express";
import { bearerToken } from "../admin/token.ts";
import type { IdentityRegistry } from "../identity/registry.ts";
import { mintTurnCredentials, type TurnOptions } from "./turn.ts";

/** The header naming the worker a request acts for (its session token is the bearer token). */
const PEER_HEADER = "x-crowdtrain-peer";

/**
 * GET /api/config: the PeerJS path and the operator's ICE servers. Asked with a worker's identity
 * (id header and session token), it also carries that worker's own TURN credentials when the
 * operator runs TURN: only a worker the server admitted can use the relay. A wrong identity is a
 * 401, never a silent answer without the relay.
 */
export function configRoute(signalling: SignallingConfig, identities: IdentityRegistry, turn: TurnOptions | undefined, now: () => number = Date.now): express.RequestHandler {
  return (req, res) => {
    const peerId = req.get(PEER_HEADER);
    if (peerId === undefined) {
      res.json(signalling);
      return;
    }
    if (!identities.checkSession(peerId, bearerToken(req.get("authorization")) ?? "")) {
      res.status(401).json({ error: `/api/config with ${PEER_HEADER} needs that worker's session token as the bearer token` });
      return;
    }
    // Credentials: never cached by the browser or anything between.
    res.set("cache-control", "no-store");
    res.json(turn === undefined ? signalling : { ...signalling, iceServers: [...signalling.iceServers, mintTurnCredentials(turn, peerId, now())] });
  };
}
