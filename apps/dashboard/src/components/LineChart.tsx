import { linear, linePath, niceTicks } from "../logic/chart.ts";
import { useWidth } from "../hooks.ts";

/** One more line drawn on the same axes as the chart's main one, named in a legend. */
export type ChartSeries = { points: readonly [number, number][]; color: string; name: string };

/** What the x values are: rounds by default; the serving charts plot seconds of server clock. */
export type ChartXAxis = {
  name: string;
  format: (x: number) => string;
  /** About `count` tick values in [min, max] (default: niceTicks, right for rounds). */
  ticks?: (min: number, max: number, count: number) => number[];
};

export type LineChartProps = {
  points: readonly [number, number][];
  formatY: (value: number) => string;
  /** Axis labels (default: formatY). */
  formatTick?: (value: number) => string;
  color: string;
  /** The main line's legend entry; the legend shows only when there are `more` lines. */
  name?: string;
  /** Further lines sharing the axes (offered vs served, p50/p95/p99). */
  more?: readonly ChartSeries[];
  xAxis?: ChartXAxis;
  /** Fixed y range (accuracy: 0..1); else fitted to the data with round ticks. */
  yDomain?: [number, number];
  /** Mark each point (sparse series such as evaluations). */
  dots?: boolean;
  /** A dashed horizontal line, e.g. the target accuracy. */
  reference?: { y: number; label: string } | undefined;
  empty: string;
  label: string;
  height?: number;
};

const PAD = { left: 46, right: 14, top: 12, bottom: 26 };
const ROUNDS: ChartXAxis = { name: "round", format: String };

const isFinitePoint = ([x, y]: readonly [number, number]) => Number.isFinite(x) && Number.isFinite(y);

/** A small SVG line chart (over rounds unless told otherwise), sized to its container. */
export function LineChart(props: LineChartProps) {
  const { points, formatY, formatTick = formatY, color, name = "", more = [], xAxis = ROUNDS, yDomain, dots = false, reference, empty, label, height = 210 } = props;
  const [ref, width] = useWidth<HTMLDivElement>(520);
  const series: ChartSeries[] = [{ points, color, name }, ...more];
  const finite = series.flatMap((s) => s.points.filter(isFinitePoint));
  if (finite.length === 0) {
    return (
      <div ref={ref} className="chart chart-empty" style={{ height }}>
        {empty}
      </div>
    );
  }
  const xs = finite.map(([x]) => x);
  const ys = finite.map(([, y]) => y);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs, xMin + 1);
  const yTicks = yDomain !== undefined ? niceTicks(yDomain[0], yDomain[1], 4) : niceTicks(Math.min(...ys, reference?.y ?? Infinity), Math.max(...ys, reference?.y ?? -Infinity), 4);
  const y0 = yTicks[0] ?? 0;
  const y1 = yTicks.at(-1) ?? 1;
  const x = linear(xMin, xMax, PAD.left, width - PAD.right);
  const y = linear(y0, y1, height - PAD.bottom, PAD.top);
  const xTicks = (xAxis.ticks ?? niceTicks)(xMin, xMax, Math.max(2, Math.floor(width / 90))).filter((t) => Number.isInteger(t) && t >= xMin && t <= xMax && x(t) < width - PAD.right - 40);
  const describe = (s: ChartSeries, [px, py]: readonly [number, number]) => `${s.name === "" ? "" : `${s.name}, `}${xAxis.name} ${xAxis.format(px)}: ${formatY(py)}`;
  return (
    <div ref={ref} className="chart">
      <svg width={width} height={height} role="img" aria-label={label}>
        {yTicks.map((t) => (
          <g key={`y${t}`} className="gridline">
            <line x1={PAD.left} x2={width - PAD.right} y1={y(t)} y2={y(t)} />
            <text x={PAD.left - 6} y={y(t)} textAnchor="end" dominantBaseline="central">
              {formatTick(t)}
            </text>
          </g>
        ))}
        {xTicks.map((t) => (
          <text key={`x${t}`} className="tick" x={x(t)} y={height - 8} textAnchor="middle">
            {xAxis.format(t)}
          </text>
        ))}
        <text className="tick axis-name" x={width - PAD.right} y={height - 8} textAnchor="end">
          {xAxis.name}
        </text>
        {reference !== undefined && (
          <g className="reference">
            <line x1={PAD.left} x2={width - PAD.right} y1={y(reference.y)} y2={y(reference.y)} />
            <text x={width - PAD.right - 4} y={y(reference.y) - 5} textAnchor="end">
              {reference.label}
            </text>
          </g>
        )}
        {series.map((s) => {
          const drawn = s.points.filter(isFinitePoint);
          const last = drawn.at(-1);
          return (
            <g key={`${s.name}-${s.color}`}>
              <path d={linePath(s.points, x, y)} fill="none" stroke={s.color} strokeWidth={2} strokeLinejoin="round" />
              {dots &&
                drawn.map((p) => (
                  <circle key={p[0]} cx={x(p[0])} cy={y(p[1])} r={3} fill={s.color}>
                    <title>{describe(s, p)}</title>
                  </circle>
                ))}
              {last !== undefined && (
                <circle cx={x(last[0])} cy={y(last[1])} r={4.5} fill="#fff" stroke={s.color} strokeWidth={2}>
                  <title>{describe(s, last)}</title>
                </circle>
              )}
            </g>
          );
        })}
      </svg>
      {more.length > 0 && (
        <ul className="legend">
          {series.map((s) => (
            <li key={`${s.name}-${s.color}`}>
              <span className="swatch" style={{ background: s.color }} />
              {s.name}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
