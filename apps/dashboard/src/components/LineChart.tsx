import { linear, linePath, niceTicks } from "../logic/chart.ts";
import { useWidth } from "../hooks.ts";

export type LineChartProps = {
  points: readonly [number, number][];
  formatY: (value: number) => string;
  /** Axis labels (default: formatY). */
  formatTick?: (value: number) => string;
  color: string;
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

/** A small SVG line chart over rounds, sized to its container. */
export function LineChart({ points, formatY, formatTick = formatY, color, yDomain, dots = false, reference, empty, label, height = 210 }: LineChartProps) {
  const [ref, width] = useWidth<HTMLDivElement>(520);
  const finite = points.filter(([, y]) => Number.isFinite(y));
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
  const xTicks = niceTicks(xMin, xMax, Math.max(2, Math.floor(width / 90))).filter((t) => Number.isInteger(t) && t >= xMin && t <= xMax && x(t) < width - PAD.right - 40);
  const last = finite.at(-1) as [number, number];
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
            {t}
          </text>
        ))}
        <text className="tick axis-name" x={width - PAD.right} y={height - 8} textAnchor="end">
          round
        </text>
        {reference !== undefined && (
          <g className="reference">
            <line x1={PAD.left} x2={width - PAD.right} y1={y(reference.y)} y2={y(reference.y)} />
            <text x={width - PAD.right - 4} y={y(reference.y) - 5} textAnchor="end">
              {reference.label}
            </text>
          </g>
        )}
        <path d={linePath(points, x, y)} fill="none" stroke={color} strokeWidth={2} strokeLinejoin="round" />
        {dots &&
          finite.map(([px, py]) => (
            <circle key={px} cx={x(px)} cy={y(py)} r={3} fill={color}>
              <title>{`round ${px}: ${formatY(py)}`}</title>
            </circle>
          ))}
        <circle cx={x(last[0])} cy={y(last[1])} r={4.5} fill="#fff" stroke={color} strokeWidth={2}>
          <title>{`round ${last[0]}: ${formatY(last[1])}`}</title>
        </circle>
      </svg>
    </div>
  );
}
