import type { PeerStatus, ScaleDecision, ServingStatus } from "@crowdtrain/protocol";
import { formatClock, formatCount, formatRps, shortId } from "../logic/format.ts";
import { latestDecisions } from "../logic/serving.ts";

/** The server keeps its last 20; ten show whether the pool is settling or flapping, and why. */
const DECISIONS_SHOWN = 10;

export type ServingTabsTableProps = { tabs: ServingStatus["tabs"]; peers: readonly PeerStatus[] };

/** Tabs serving now; names come from the peers (untrusted text, rendered as text). */
export function ServingTabsTable({ tabs, peers }: ServingTabsTableProps) {
  const byId = new Map(peers.map((p) => [p.id, p]));
  return (
    <div>
      <h3>
        Serving tabs <span className="muted">{tabs.length}</span>
      </h3>
      {tabs.length === 0 ? (
        <p className="muted empty">No tab serves now: the autoscaler moves trainers here when requests come, and a tab opened with ?role=server serves only.</p>
      ) : (
        // Styled as the peers table: same kind of dense, scrolling rows.
        <div className="table-scroll">
          <table className="peers" data-testid="serving-tabs">
            <thead>
              <tr>
                <th>Tab</th>
                <th>Id</th>
                <th className="num" title="Committed round whose weights it serves">Round</th>
                <th className="num" title="Requests sent to it and not yet answered">Outstanding</th>
                <th className="num" title="Rows per second of its busy time, measured from its replies">Capacity req/s</th>
                <th title="Dedicated: joined with ?role=server and never moved. Moved: a trainer the autoscaler moved to serving, and will move back.">Kind</th>
              </tr>
            </thead>
            <tbody>
              {tabs.map((tab) => (
                <tr key={tab.id} data-testid="serving-tab" data-peer-id={tab.id}>
                  <TabNameCell peer={byId.get(tab.id)} />
                  <td className="mono" title={tab.id}>
                    {shortId(tab.id)}
                  </td>
                  <td className="num">{tab.round ?? <span className="muted">loading</span>}</td>
                  <td className="num">{formatCount(tab.outstanding)}</td>
                  <td className="num">{formatRps(tab.capacityRps)}</td>
                  <td>{tab.dedicated ? <span className="pill pill-serving">dedicated</span> : <span className="pill">moved from training</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

/**
 * The volunteer's name, as the peers table shows it; a dash when the status does not carry the tab's peer
 * row (a large swarm's status carries some rows only). The id is in the next column either way.
 */
function TabNameCell({ peer }: { peer: PeerStatus | undefined }) {
  const name = peer?.name?.trim();
  return (
    <td className="name" title={name}>
      {name !== undefined && name !== "" ? name : <span className="muted">{peer === undefined ? "–" : "anonymous"}</span>}
    </td>
  );
}

/** The autoscaler's latest target changes, newest first, with its reason (server text, rendered as text). */
export function ScaleDecisionsTable({ decisions }: { decisions: readonly ScaleDecision[] }) {
  const latest = latestDecisions(decisions, DECISIONS_SHOWN);
  return (
    <div>
      <h3>Scale decisions</h3>
      {latest.length === 0 ? (
        <p className="muted empty">No scale decision yet: the pool has kept its size.</p>
      ) : (
        <div className="table-scroll">
          <table className="peers" data-testid="scale-decisions">
            <thead>
              <tr>
                <th>At</th>
                <th className="num" title="Pool size when the autoscaler decided → its new target">Tabs</th>
                <th>Mode</th>
                <th>Reason</th>
              </tr>
            </thead>
            <tbody>
              {latest.map((decision) => (
                <tr key={`${decision.at}-${decision.from}-${decision.to}`} data-testid="scale-decision">
                  <td className="muted">{formatClock(decision.at)}</td>
                  <td className="num">{`${decision.from} → ${decision.to}`}</td>
                  <td>{decision.panic ? <span className="pill pill-panic">panic</span> : <span className="muted">stable</span>}</td>
                  <td className="wrap" title={decision.reason}>
                    {decision.reason}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
