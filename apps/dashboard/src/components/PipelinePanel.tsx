import type { PeerStatus, Status } from "@crowdtrain/protocol";
import { formatDuration, formatPercent, peerLabel } from "../logic/format.ts";

export type PipelinePanelProps = { pipeline: NonNullable<Status["pipeline"]>; peers: readonly PeerStatus[] };

/**
 * A pipeline job's plan: replicas × stages (who holds which layers), each stage's busy share of its
 * span in the last committed round, and the measured bubble beside GPipe's (K−1)/(M+K−1). The plan
 * shown is the round in progress, else the last committed one.
 */
export function PipelinePanel({ pipeline, peers }: PipelinePanelProps) {
  const { last } = pipeline;
  const plan = pipeline.open ?? last?.plan;
  if (plan === undefined) return <p className="muted empty">The plan of replicas × stages appears with the first round.</p>;
  const byId = new Map(peers.map((p) => [p.id, p]));
  const stageTimes = last !== undefined && last.plan.stages.length === plan.stages.length ? last.stages : undefined;
  return (
    <>
      <p className="chart-summary" data-testid="pipeline-summary">
        {`${plan.stages.length} stages × ${plan.replicas.length} replica${plan.replicas.length === 1 ? "" : "s"} · ${plan.microBatches} micro-batches · ${plan.schedule}`}
        {last !== undefined && ` · bubble ${last.bubble === undefined ? "not reported" : formatPercent(last.bubble)} measured in round ${last.round}, ${formatPercent(last.bubbleTheory)} in theory`}
      </p>
      <div className="table-scroll">
        <table className="peers" data-testid="pipeline-plan">
          <thead>
            <tr>
              <th>Replica</th>
              {plan.stages.map((stage, k) => {
                const times = stageTimes?.[k];
                return (
                  <th key={k} data-testid="pipeline-stage">
                    {`Stage ${k} · layers ${stage.from}–${stage.to - 1}`}
                    {times !== undefined && (
                      <div className="muted" data-testid="pipeline-stage-busy">
                        {`busy ${formatPercent(times.busyMs / times.spanMs, 0)} of ${formatDuration(times.spanMs)}`}
                        <div className="bar" aria-hidden="true">
                          <div className="bar-fill" style={{ width: `${Math.round((100 * times.busyMs) / times.spanMs)}%` }} />
                        </div>
                      </div>
                    )}
                  </th>
                );
              })}
            </tr>
          </thead>
          <tbody>
            {plan.replicas.map((row, r) => (
              <tr key={r} data-testid="pipeline-replica">
                <td className="num">{r}</td>
                {row.map((id) => (
                  <td key={id} className="name" title={id}>
                    {peerLabel(byId.get(id), id)}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
