import { fetchSignallingConfig, openPeer } from "@crowdtrain/p2p";
import { IdentitySchema, type Identity } from "@crowdtrain/protocol";
import type { Peer } from "peerjs";
import * as v from "valibot";

/** Asking a lab server for an identity: one small request on loopback. */
const LAB_IDENTITY_TIMEOUT_MS = 5_000;

/**
 * A PeerJS identity for a lab page. The signalling server accepts only ids the server issued; a
 * worker gets one at hello, a lab page (which does not join the job) from the lab-only endpoint
 * that a server started with `--lab` mounts.
 */
export async function fetchLabIdentity(): Promise<Identity> {
  const response = await fetch("/api/lab/identity", { method: "POST", signal: AbortSignal.timeout(LAB_IDENTITY_TIMEOUT_MS) });
  if (!response.ok) throw new Error(`POST /api/lab/identity answered ${response.status} (is the server started with --lab?)`);
  return v.parse(IdentitySchema, await response.json());
}

/** A lab page's PeerJS peer, with the ICE servers (and TURN credentials) the server gives its identity. */
export async function openLabPeer(): Promise<Peer> {
  const identity = await fetchLabIdentity();
  return openPeer(await fetchSignallingConfig("", identity), identity);
}
