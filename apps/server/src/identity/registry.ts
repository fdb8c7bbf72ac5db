import { randomBytes } from "node:crypto";
import type { Identity } from "@crowdtrain/protocol";
import { tokenMatches } from "../admin/token.ts";

/** Random bytes behind each secret the server issues: 192 bits, 32 base64url characters. */
const SECRET_BYTES = 24;
/** Random bytes of a peer id: 96 bits, enough that ids are never guessed nor collide. */
const ID_BYTES = 12;

export type Issued = Identity & { address: string; issuedAt: number };
export type RevokeListener = (peerId: string, reason: string) => void;

const secret = (): string => randomBytes(SECRET_BYTES).toString("base64url");

/**
 * The identities this server issued, one per worker connection: a peer id used for the coordinator
 * and PeerJS alike, a session token for HTTP requests acting for the worker, and the PeerJS token
 * its signalling socket must present. The PeerJS key is one per server start. Nothing but this
 * registry mints ids, so no client can pick or take another's id; a revoked id is never issued again.
 */
export class IdentityRegistry {
  readonly peerKey = secret();
  private readonly issued = new Map<string, Issued>();
  private readonly listeners = new Set<RevokeListener>();

  constructor(private readonly now: () => number = Date.now) {}

  get size(): number {
    return this.issued.size;
  }

  issue(address: string): Identity {
    let peerId: string;
    do peerId = `w-${randomBytes(ID_BYTES).toString("hex")}`;
    while (this.issued.has(peerId));
    const identity: Issued = { peerId, sessionToken: secret(), peerKey: this.peerKey, peerToken: secret(), address, issuedAt: this.now() };
    this.issued.set(peerId, identity);
    return { peerId, sessionToken: identity.sessionToken, peerKey: identity.peerKey, peerToken: identity.peerToken };
  }

  get(peerId: string): Readonly<Issued> | undefined {
    return this.issued.get(peerId);
  }

  isIssued(peerId: string): boolean {
    return this.issued.has(peerId);
  }

  /** True when `token` is the session token of the live identity `peerId` (constant time). */
  checkSession(peerId: string, token: string): boolean {
    const identity = this.issued.get(peerId);
    return identity !== undefined && tokenMatches(identity.sessionToken, token);
  }

  /** True when a PeerJS socket may register as `peerId` with this key and token (constant time). */
  checkPeer(peerId: string, key: string, token: string): boolean {
    const identity = this.issued.get(peerId);
    return identity !== undefined && tokenMatches(this.peerKey, key) && tokenMatches(identity.peerToken, token);
  }

  /** The identity is dead (its socket closed, or it was evicted): listeners close what it holds. */
  revoke(peerId: string, reason: string): void {
    if (!this.issued.delete(peerId)) return;
    for (const listener of this.listeners) listener(peerId, reason);
  }

  onRevoke(listener: RevokeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
