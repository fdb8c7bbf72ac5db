import type { LastRing, PeerStatus } from "@crowdtrain/protocol";
import { formatAuditCounts, formatBytes, formatCount, formatDuration, formatPercent, formatRate, shortId } from "../logic/format.ts";
import { BACKEND_COLORS } from "./colors.ts";

export type PeersTableProps = { peers: readonly PeerStatus[]; ring: readonly string[]; lastRing: LastRing | undefined };

/** One row per peer (departed ones greyed as "gone"); scrolls inside its card when the swarm is large. */
export function PeersTable({ peers, ring, lastRing }: PeersTableProps) {
  const outgoing = new Map((lastRing?.links ?? []).map((link) => [link.from, link]));
  return (
    <div className="table-scroll" data-testid="peers-scroll">
      <table className="peers" data-testid="peers">
        <thead>
          <tr>
            <th title="Position in the current ring">#</th>
            <th>Name</th>
            <th>Id</th>
            <th>Backend</th>
            <th className="num">Samples/s</th>
            <th className="num" title="Share of the global batch in the last lease">Batch share</th>
            <th className="num">Sent</th>
            <th className="num">Received</th>
            <th className="num" title="Throughput of its link to the next peer in the ring, last committed round">Link → next</th>
            <th className="num">Last round</th>
            <th className="num" title="Strikes in force: a misreported lease, a minority hash, a state that failed the server's check, a confirmed or a false accusation. At the maximum the peer is evicted.">Strikes</th>
            <th className="num" title="Spot checks of its contributions: the server recomputed one and compared (passed ✓ · failed ✗)">Audits</th>
            <th>State</th>
          </tr>
        </thead>
        <tbody>
          {peers.map((peer) => {
            const position = ring.indexOf(peer.id);
            const link = outgoing.get(peer.id);
            return (
              <tr key={peer.id} className={`state-${peer.state}`} data-peer-id={peer.id}>
                <td className="num muted">{position < 0 ? "" : position + 1}</td>
                <td className="name" data-testid="peer-name" title={peer.name}>
                  {peer.name === undefined || peer.name.trim() === "" ? <span className="muted">anonymous</span> : peer.name}
                </td>
                <td className="mono" title={peer.id}>
                  {shortId(peer.id)}
                </td>
                <td>
                  <span className="dot" style={{ background: BACKEND_COLORS[peer.backend] }} />
                  <span data-testid="peer-backend">{peer.backend}</span>
                  {peer.adapter !== undefined && (
                    <span className="adapter" title={peer.adapter}>
                      {peer.adapter}
                    </span>
                  )}
                </td>
                <td className="num">{peer.samplesPerSecond === undefined ? "–" : formatCount(peer.samplesPerSecond)}</td>
                <BatchShareCell peer={peer} />
                <td className="num">{formatBytes(peer.bytesSent)}</td>
                <td className="num">{formatBytes(peer.bytesReceived)}</td>
                <td className="num" title={link === undefined ? undefined : `${formatBytes(link.bytes)} in ${formatDuration(link.ms)}`}>
                  {link === undefined ? "–" : formatRate(link.bytesPerSecond)}
                </td>
                <td className="num">{formatDuration(peer.lastRoundMs)}</td>
                <td className={`num${(peer.strikes ?? 0) > 0 ? " struck" : ""}`} data-testid="peer-strikes">
                  {peer.strikes ?? 0}
                </td>
                <td className={`num${(peer.audits?.failed ?? 0) > 0 ? " struck" : ""}`} data-testid="peer-audits">
                  {formatAuditCounts(peer.audits)}
                </td>
                <td>
                  <span className={`pill pill-${peer.state}`} data-testid="peer-state" title={peer.leftBecause}>
                    {peer.state}
                  </span>
                  {peer.leftBecause !== undefined && /evicted/.test(peer.leftBecause) && (
                    <span className="evicted" data-testid="peer-evicted" title={peer.leftBecause}>
                      evicted
                    </span>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** A serving peer is in no round: a batch share would be its stale last lease, so it shows none. */
function BatchShareCell({ peer }: { peer: PeerStatus }) {
  if (peer.state === "serving") {
    return (
      <td className="num muted" title="Serving inference requests: in no round">
        –
      </td>
    );
  }
  return (
    <td className="num">
      <span className="share">
        <span className="share-bar" style={{ width: `${Math.min(100, peer.share * 100)}%` }} />
      </span>
      {formatPercent(peer.share, 0)}
    </td>
  );
}
