import type { LastRing, PeerStatus } from "@crowdtrain/protocol";
import { formatRate, peerLabel, truncate } from "../logic/format.ts";
import { layoutRing } from "../logic/ring-layout.ts";
import { browserTextWidth } from "../measure.ts";
import { BACKEND_COLORS } from "./colors.ts";

export type RingGraphProps = {
  /** Current ring order: the open round's, else the last committed round's. */
  ring: readonly string[];
  /** The round that ring belongs to, and whether it is still in progress. */
  round: number | undefined;
  inProgress: boolean;
  peers: readonly PeerStatus[];
  lastRing: LastRing | undefined;
  minWorkers: number;
  /** Members of the whole ring, when the status carries only its first ones (a large swarm). */
  ringSize?: number | undefined;
};

/** Names in the caption are cut to this many characters (the full ones are in the table and the tooltips). */
const CAPTION_NAME_MAX = 20;
/** Rings longer than this list their order in a collapsed block under the drawing. */
const ORDER_OPEN_MAX = 16;
/** A ring the status names only in part lists this many of its slowest links instead of a drawing. */
const SLOWEST_LINKS_SHOWN = 10;

/** Link colour by throughput relative to the ring's fastest link: the ring goes as fast as its slowest. */
function linkColor(relative: number | undefined): string {
  if (relative === undefined) return "#a0aec0";
  if (relative >= 0.75) return "#0f9d8a";
  if (relative >= 0.4) return "#d98a0b";
  return "#d64545";
}

export function RingGraph({ ring, round, inProgress, peers, lastRing, minWorkers, ringSize }: RingGraphProps) {
  if (ring.length === 0) {
    return (
      <p className="muted empty">
        No ring yet. It forms when the first round opens, once {minWorkers} worker{minWorkers === 1 ? " is" : "s are"} ready.
      </p>
    );
  }
  const byId = new Map(peers.map((p) => [p.id, p]));
  if (ringSize !== undefined && ringSize > ring.length) return <PartialRing ringSize={ringSize} round={round} lastRing={lastRing} label={(id) => peerLabel(byId.get(id), id)} />;
  const links = (lastRing?.links ?? []).map((link) => ({ ...link, text: link.bytesPerSecond === undefined ? undefined : formatRate(link.bytesPerSecond) }));
  const layout = layoutRing(
    ring.map((id) => ({ id, label: peerLabel(byId.get(id), id) })),
    links,
    browserTextWidth(),
  );
  const measured = layout.edges.filter((e) => e.bytesPerSecond !== undefined);
  const slowest = measured.reduce<(typeof measured)[number] | undefined>((a, e) => (a === undefined || (e.bytesPerSecond ?? 0) < (a.bytesPerSecond ?? 0) ? e : a), undefined);
  const label = (id: string) => peerLabel(byId.get(id), id);
  const order = (
    <ol className="ring-order" data-testid="ring-order">
      {ring.map((id, i) => (
        <li key={id} data-peer-id={id} title={id}>
          <span className="ring-pos">{i + 1}</span>
          <span className="ring-name">{label(id)}</span>
        </li>
      ))}
    </ol>
  );
  return (
    <div className="ring">
      <svg
        className="ring-svg"
        viewBox={`0 0 ${layout.width} ${layout.height}`}
        role="img"
        aria-label={`Ring of ${ring.length} peer${ring.length === 1 ? "" : "s"}`}
        data-testid="ring-graph"
      >
        <defs>
          <marker id="ring-arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="5" markerHeight="5" orient="auto-start-reverse">
            <path d="M 0 0 L 10 5 L 0 10 z" fill="context-stroke" />
          </marker>
        </defs>
        {layout.mode !== "single" && <circle className="ring-track" cx={layout.cx} cy={layout.cy} r={layout.radius} />}
        {layout.edges.map((edge) => (
          <path
            key={`e${edge.index}`}
            d={edge.path}
            fill="none"
            stroke={linkColor(edge.relative)}
            strokeWidth={layout.linkStyle === "band" ? 4 : edge.relative === undefined ? 1.5 : 1.5 + 2.5 * edge.relative}
            strokeDasharray={edge.relative === undefined && layout.linkStyle === "arc" ? "4 3" : undefined}
            markerEnd={layout.linkStyle === "arc" ? "url(#ring-arrow)" : undefined}
          >
            <title>{`${label(edge.from)} → ${label(edge.to)}: ${edge.text ?? "not measured yet"}`}</title>
          </path>
        ))}
        {layout.showLinkLabels &&
          layout.edges.map((edge) =>
            edge.text === undefined ? null : (
              <text key={`l${edge.index}`} className="ring-link-label" x={edge.labelX} y={edge.labelY} fontSize={layout.linkFontSize} textAnchor="middle" dominantBaseline="central">
                {edge.text}
              </text>
            ),
          )}
        {layout.nodes.map((node) => {
          const peer = byId.get(node.id);
          return (
            <g key={node.id} className="ring-node" data-ring-index={node.index} data-peer-id={node.id}>
              <title>{`${node.index + 1}. ${node.fullLabel} (${node.id})${peer === undefined ? "" : `, ${peer.backend}, ${peer.state}`}`}</title>
              <circle cx={node.x} cy={node.y} r={layout.nodeRadius} fill={peer === undefined ? "#a0aec0" : BACKEND_COLORS[peer.backend]} />
              {layout.showIndex && (
                <text className="ring-index" x={node.x} y={node.y} textAnchor="middle" dominantBaseline="central" fontSize={layout.nodeRadius}>
                  {node.index + 1}
                </text>
              )}
              <text
                className="ring-label"
                x={node.labelX}
                y={node.labelY}
                fontSize={layout.fontSize}
                textAnchor={node.anchor}
                dominantBaseline="central"
                transform={node.rotate === 0 ? undefined : `rotate(${node.rotate.toFixed(2)} ${node.labelX.toFixed(2)} ${node.labelY.toFixed(2)})`}
              >
                {node.label}
              </text>
            </g>
          );
        })}
      </svg>
      <p className="ring-caption">
        {round === undefined ? "" : `Round ${round}${inProgress ? " (in progress)" : ""} · `}
        {ring.length} peer{ring.length === 1 ? "" : "s"}
        {ring.length === 1 && " · alone: no all-reduce"}
        {ring.length > 1 && " · data flows clockwise"}
        {slowest !== undefined && measured.length > 1 && (
          <>
            {" · slowest link "}
            <strong>
              {truncate(label(slowest.from), CAPTION_NAME_MAX)} → {truncate(label(slowest.to), CAPTION_NAME_MAX)}
            </strong>{" "}
            {slowest.text}
          </>
        )}
        {ring.length > 1 && measured.length === 0 && " · link speeds appear after the first committed round"}
      </p>
      {ring.length <= ORDER_OPEN_MAX ? (
        order
      ) : (
        <details>
          <summary>Ring order ({ring.length} peers)</summary>
          {order}
        </details>
      )}
    </div>
  );
}

/** A ring too large to draw (the status names only its first members): its size and slowest links. */
function PartialRing({ ringSize, round, lastRing, label }: { ringSize: number; round: number | undefined; lastRing: LastRing | undefined; label: (id: string) => string }) {
  const slowest = (lastRing?.links ?? []).slice(0, SLOWEST_LINKS_SHOWN);
  return (
    <div className="ring" data-testid="ring-partial">
      <p>
        Ring of {ringSize.toLocaleString("en-US")} peers{round === undefined ? "" : ` (round ${round})`}: too many to draw.
        {slowest.length > 0 && ` Its slowest links in round ${lastRing?.round ?? "?"}, which the all-reduce waits for:`}
      </p>
      {slowest.length > 0 && (
        <ol className="ring-order">
          {slowest.map((link) => (
            <li key={link.from} title={`${link.from} → ${link.to}`}>
              {`${label(link.from)} → ${label(link.to)}: ${link.bytesPerSecond === undefined ? "not measured" : formatRate(link.bytesPerSecond)}`}
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
