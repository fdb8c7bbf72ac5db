import type { RoundPoint } from "@crowdtrain/protocol";
import { linear, niceTicks } from "../logic/chart.ts";
import { formatDuration, formatPercent } from "../logic/format.ts";
import { PHASES, phaseShares, splitRound, timelineScale } from "../logic/timeline.ts";
import { useWidth } from "../hooks.ts";
import { PHASE_COLORS } from "./colors.ts";

/** Rounds shown: enough to see a trend, few enough that each bar stays a few pixels wide. */
const TIMELINE_ROUNDS = 40;
const HEIGHT = 220;
const MIN_SLOTS = 20;
const PAD = { left: 52, right: 8, top: 10, bottom: 24 };

/** Recent rounds as stacked bars: compute, all-reduce, update and the rest of the round's wall time. */
export function Timeline({ rounds }: { rounds: readonly RoundPoint[] }) {
  const [ref, width] = useWidth<HTMLDivElement>(600);
  const splits = rounds.slice(-TIMELINE_ROUNDS).map(splitRound);
  if (splits.length === 0) {
    return (
      <div ref={ref} className="chart chart-empty" style={{ height: HEIGHT }}>
        Each committed round appears here, split into its phases.
      </div>
    );
  }
  const scale = timelineScale(splits);
  const ticks = niceTicks(0, scale.maxMs, 4).filter((t) => !scale.cut || t <= scale.maxMs);
  const top = scale.cut ? scale.maxMs : (ticks.at(-1) ?? 1);
  const y = linear(0, top, HEIGHT - PAD.bottom, PAD.top);
  // Bars keep a steady width once there are enough rounds; the first few are not absurdly wide.
  const slot = (width - PAD.left - PAD.right) / Math.max(MIN_SLOTS, splits.length);
  const barWidth = Math.max(2, Math.min(24, slot * 0.75));
  const shares = phaseShares(splits);
  const labelEvery = Math.ceil(28 / slot);
  return (
    <div ref={ref} className="chart">
      <svg width={width} height={HEIGHT} role="img" aria-label={`Timeline of the last ${splits.length} rounds`} data-testid="timeline">
        {ticks.map((t) => (
          <g key={t} className="gridline">
            <line x1={PAD.left} x2={width - PAD.right} y1={y(t)} y2={y(t)} />
            <text x={PAD.left - 6} y={y(t)} textAnchor="end" dominantBaseline="central">
              {formatDuration(t)}
            </text>
          </g>
        ))}
        {splits.map((split, i) => {
          const left = PAD.left + i * slot + (slot - barWidth) / 2;
          let sum = 0;
          return (
            <g key={split.round}>
              <title>
                {`round ${split.round}: ${formatDuration(split.totalMs)} — ` +
                  PHASES.map(({ key, label }) => `${label} ${formatDuration(split.phases[key])}`).join(", ")}
              </title>
              {PHASES.map(({ key }) => {
                const y0 = y(Math.min(sum, top));
                sum += split.phases[key];
                const y1 = y(Math.min(sum, top));
                return <rect key={key} x={left} y={y1} width={barWidth} height={Math.max(0, y0 - y1)} fill={PHASE_COLORS[key]} />;
              })}
              {split.totalMs > top && <path className="cut-mark" d={`M ${left - 1} ${PAD.top + 4} l ${barWidth / 2 + 1} -5 l ${barWidth / 2 + 1} 5`} />}
              {(splits.length - 1 - i) % labelEvery === 0 && (
                <text className="tick" x={left + barWidth / 2} y={HEIGHT - 8} textAnchor="middle">
                  {split.round}
                </text>
              )}
            </g>
          );
        })}
      </svg>
      <ul className="legend">
        {PHASES.map(({ key, label }) => (
          <li key={key}>
            <span className="swatch" style={{ background: PHASE_COLORS[key] }} />
            {label} <span className="muted">{formatPercent(shares[key], 0)}</span>
          </li>
        ))}
        {scale.cut && <li className="muted">bars over {formatDuration(top)} are cut (hover for their time)</li>}
      </ul>
    </div>
  );
}
