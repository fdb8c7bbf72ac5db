import * as v from "valibot";

/**
 * The messages a PeerJS client (peerjs 1.5.5, `ServerMessageType`) sends to the signalling server,
 * parsed at our boundary before `peer` sees them. `peer` itself JSON.parses whatever arrives, emits
 * an Error (logged with its stack) for anything else, and queues messages for any `dst` it does not
 * know, without bound; so only what parses here, addressed to an id the server issued, reaches it.
 *
 * The client sends HEARTBEAT (every 5 s), and OFFER / ANSWER / CANDIDATE addressed to another peer.
 * LEAVE is accepted with a `dst` because `peer` relays it as a client message (older clients send
 * it when a connection closes); a LEAVE without `dst` would make `peer` forget the sender while its
 * socket stays open, so it is refused. EXPIRE, OPEN, ERROR, ID-TAKEN and INVALID-KEY are only ever
 * sent by the server; a client sending them is refused. `src` is never read from the client: `peer`
 * sets it to the socket's registered id.
 */

/** Longest `dst` accepted: issued ids are 26 characters (`w-` + 24 hex); anything far longer is garbage, not a typo. */
export const PEER_ID_MAX_CHARS = 128;

const PeerIdSchema = v.pipe(v.string(), v.minLength(1), v.maxLength(PEER_ID_MAX_CHARS));

/** What OFFER, ANSWER and CANDIDATE carry for the other peer; only the fields every one of them has are checked. */
const SignalPayloadSchema = v.looseObject({ type: v.string(), connectionId: v.string() });

/** How much of an unknown type a refusal quotes: enough to recognise it, short enough for a close reason. */
const QUOTED_TYPE_MAX_CHARS = 40;

export const PeerClientMessageSchema = v.variant(
  "type",
  [
    v.object({ type: v.literal("HEARTBEAT") }),
    v.object({ type: v.literal("OFFER"), dst: PeerIdSchema, payload: SignalPayloadSchema }),
    v.object({ type: v.literal("ANSWER"), dst: PeerIdSchema, payload: SignalPayloadSchema }),
    v.object({ type: v.literal("CANDIDATE"), dst: PeerIdSchema, payload: SignalPayloadSchema }),
    v.object({ type: v.literal("LEAVE"), dst: PeerIdSchema }),
  ],
  // Valibot's default lists every expected type before the received one, which a 123-byte close
  // reason then cuts off; the received type is the useful part.
  (issue) => `unknown (received ${issue.received.slice(0, QUOTED_TYPE_MAX_CHARS)})`,
);
export type PeerClientMessage = v.InferOutput<typeof PeerClientMessageSchema>;

/**
 * What to do with one inbound text frame: hand it to `peer`, drop it quietly (well-formed, but for
 * nobody this server issued: the destination may just have been revoked, a race and not an attack),
 * or refuse it (not a PeerJS client message: the sender is broken or hostile; close its socket).
 */
export type Inspection =
  | { kind: "deliver"; message: PeerClientMessage }
  | { kind: "drop"; why: string }
  | { kind: "refuse"; reason: string };

export function inspectPeerMessage(text: string, isIssued: (peerId: string) => boolean): Inspection {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    // Expected input from a broken client: a value, not an exception, and no stack in the log.
    return { kind: "refuse", reason: `not JSON (${error instanceof Error ? error.message : String(error)})` };
  }
  const result = v.safeParse(PeerClientMessageSchema, json);
  if (!result.success) return { kind: "refuse", reason: `not a PeerJS client message: ${describeIssues(result.issues)}` };
  const message = result.output;
  if ("dst" in message && !isIssued(message.dst)) return { kind: "drop", why: `${message.type} to an id this server did not issue` };
  return { kind: "deliver", message };
}

/** Valibot's issues on one line ("dst: Invalid length ...; payload: ..."): they go into a close reason and a log line. */
function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  return issues
    .map((issue) => {
      const path = v.getDotPath(issue);
      return path === null ? issue.message : `${path}: ${issue.message}`;
    })
    .join("; ");
}
