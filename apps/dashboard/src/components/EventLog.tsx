import type { ClusterEvent, PeerStatus } from "@crowdtrain/protocol";
import { formatClock, peerLabel, splitPeerRefs } from "../logic/format.ts";

/**
 * Newest first; each kind gets its colour (joined, left, aborted, checkpoint, eval, audit, rollback, operator
 * actions...). Peer ids in the server's texts are shown as the peers' names (as text), the id in a tooltip.
 */
export function EventLog({ events, peers }: { events: readonly ClusterEvent[]; peers: readonly PeerStatus[] }) {
  if (events.length === 0) return <p className="muted empty">Nothing has happened yet.</p>;
  const byId = new Map(peers.map((p) => [p.id, p]));
  const ids = [...byId.keys()];
  return (
    <ol className="events" data-testid="events">
      {[...events].reverse().map((event, i) => (
        <li key={`${event.at}-${events.length - i}`} className={`event event-${event.kind}`}>
          <time dateTime={new Date(event.at).toISOString()}>{formatClock(event.at)}</time>
          <span className="event-kind">{event.kind}</span>
          <span className="event-text">
            {splitPeerRefs(event.text, ids).map((part, k) =>
              "peerId" in part ? (
                <span key={k} className="peer-ref" title={part.peerId}>
                  {peerLabel(byId.get(part.peerId), part.peerId)}
                </span>
              ) : (
                part.text
              ),
            )}
          </span>
        </li>
      ))}
    </ol>
  );
}
