// Axis ticks and scales for the small SVG charts. Pure.

/** About `count` round tick values covering [min, max] (1, 2, 2.5 or 5 times a power of ten). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const rough = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = ([1, 2, 2.5, 5, 10].find((m) => m * power >= rough) ?? 10) * power;
  const first = Math.floor(min / step) * step;
  const ticks: number[] = [];
  for (let t = first; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  if ((ticks.at(-1) ?? -Infinity) < max) ticks.push(Number((first + ticks.length * step).toPrecision(12)));
  return ticks;
}

/** Linear map from [d0, d1] to [r0, r1]; a zero-width domain maps to the middle of the range. */
export function linear(d0: number, d1: number, r0: number, r1: number): (x: number) => number {
  if (d1 === d0) return () => (r0 + r1) / 2;
  const k = (r1 - r0) / (d1 - d0);
  return (x) => r0 + (x - d0) * k;
}

/** An SVG polyline path through the finite points; a NaN breaks the line. */
export function linePath(points: readonly [number, number][], x: (v: number) => number, y: (v: number) => number): string {
  let path = "";
  let pen = false;
  for (const [px, py] of points) {
    if (!Number.isFinite(py) || !Number.isFinite(px)) {
      pen = false;
      continue;
    }
    path += `${pen ? "L" : "M"}${x(px).toFixed(1)},${y(py).toFixed(1)}`;
    pen = true;
  }
  return path;
}

/** Steps a clock axis reads well at, in seconds: whole minutes and their usual fractions, never "every 100 s". */
const CLOCK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1_800, 3_600, 7_200, 21_600, 43_200, 86_400];

/** About `count` ticks in [min, max] (seconds since the epoch) at multiples of a clock-friendly step. */
export function clockTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max) || max < min) return [];
  const rough = (max - min) / Math.max(1, count);
  const step = CLOCK_STEPS.find((s) => s >= rough) ?? (CLOCK_STEPS.at(-1) as number);
  const ticks: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max; t += step) ticks.push(t);
  return ticks;
}
