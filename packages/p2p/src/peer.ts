import { parseSignallingConfig, type SignallingConfig } from "@crowdtrain/protocol";
import { Peer } from "peerjs";

/** Registering with the signalling server: WebSocket open plus its OPEN message. */
export const PEER_OPEN_TIMEOUT_MS = 10_000;
/** Fetching /api/config from our own server. */
export const CONFIG_TIMEOUT_MS = 5_000;

// The shape of /api/config is the protocol's (SignallingConfigSchema), checked by the server too.
export type { SignallingConfig } from "@crowdtrain/protocol";
/** The PeerJS registration the Crowdtrain server issued (it accepts no other id). */
export type PeerCredentials = { peerId: string; peerKey: string; peerToken: string };

/** Who asks for the config: a worker's issued id and session token (its TURN credentials are its own). */
export type ConfigAuth = { peerId: string; sessionToken: string };

/**
 * Reads the PeerJS path and the operator's ICE servers (none by default) from our own server; with
 * `auth`, also this worker's TURN credentials, which expire: fetch again for each new peer.
 */
export async function fetchSignallingConfig(origin = "", auth?: ConfigAuth): Promise<SignallingConfig> {
  const headers: Record<string, string> = auth === undefined ? {} : { "x-crowdtrain-peer": auth.peerId, authorization: `Bearer ${auth.sessionToken}` };
  const response = await fetch(`${origin}/api/config`, { headers, signal: AbortSignal.timeout(CONFIG_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`/api/config answered ${response.status}`);
  // A body that is not JSON rejects here; one of the wrong shape throws MessageError naming the problem.
  return parseSignallingConfig(await response.json());
}

/**
 * Opens a PeerJS Peer registered with the Crowdtrain server the page came from, under the id, key
 * and token that server issued: never PeerJS's cloud default, ICE servers exactly as the operator
 * configured them. Resolves once the server accepted it; rejects (and destroys the peer) after
 * PEER_OPEN_TIMEOUT_MS.
 */
export async function openPeer(config: SignallingConfig, credentials: PeerCredentials, where: Location = location): Promise<Peer> {
  const secure = where.protocol === "https:";
  const peer = new Peer(credentials.peerId, {
    key: credentials.peerKey,
    token: credentials.peerToken,
    host: where.hostname,
    port: Number(where.port) || (secure ? 443 : 80),
    path: config.peerPath,
    secure,
    debug: 0,
    config: { iceServers: config.iceServers, iceTransportPolicy: config.iceTransportPolicy ?? "all" },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no id from the PeerJS server within ${PEER_OPEN_TIMEOUT_MS} ms`)), PEER_OPEN_TIMEOUT_MS);
      peer.once("open", () => {
        clearTimeout(timer);
        resolve();
      });
      peer.once("error", (error) => {
        clearTimeout(timer);
        reject(new Error(`PeerJS (${error.type}): ${error.message}`));
      });
    });
  } catch (error) {
    peer.destroy();
    throw error;
  }
  return peer;
}
