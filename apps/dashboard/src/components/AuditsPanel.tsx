import type { PeerStatus, Status } from "@crowdtrain/protocol";
import { formatClock, formatCount, formatRelativeError, peerLabel } from "../logic/format.ts";

/** The server keeps more; the last few are enough to see whether checks pass and who failed one. */
const AUDITS_SHOWN = 10;

export type AuditsPanelProps = { audits: NonNullable<Status["audits"]>; peers: readonly PeerStatus[] };

/** Totals, the tolerance, and the latest spot checks, newest first; peer names and details are shown as text. */
export function AuditsPanel({ audits, peers }: AuditsPanelProps) {
  const byId = new Map(peers.map((p) => [p.id, p]));
  const latest = audits.recent.slice(-AUDITS_SHOWN).reverse();
  return (
    <>
      <p className="chart-summary" data-testid="audits-summary">
        {`${formatCount(audits.passed)} passed · `}
        <span className={audits.failed > 0 ? "struck" : undefined}>{`${formatCount(audits.failed)} failed`}</span>
        {` · tolerance ${formatRelativeError(audits.tolerance)} relative error`}
      </p>
      {latest.length === 0 ? (
        <p className="muted empty">No spot check yet.</p>
      ) : (
        // Styled as the peers table: same kind of dense, scrolling rows.
        <div className="table-scroll">
          <table className="peers" data-testid="audits">
            <thead>
              <tr>
                <th>At</th>
                <th className="num">Round</th>
                <th>Peer</th>
                <th>Outcome</th>
                <th className="num" title="||claimed − recomputed|| / ||recomputed||">Relative error</th>
                <th>Detail</th>
              </tr>
            </thead>
            <tbody>
              {latest.map((audit) => (
                <tr key={`${audit.at}-${audit.round}-${audit.peer}`} data-testid="audit">
                  <td className="muted">{formatClock(audit.at)}</td>
                  <td className="num">{audit.round}</td>
                  <td className="name" title={audit.peer}>
                    {peerLabel(byId.get(audit.peer), audit.peer)}
                  </td>
                  <td>
                    <span className={`pill audit-${audit.outcome}`}>{audit.outcome}</span>
                  </td>
                  <td className="num mono">{formatRelativeError(audit.relativeError)}</td>
                  <td className="audit-detail" title={audit.detail}>
                    {audit.detail}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
