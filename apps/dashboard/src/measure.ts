// Text widths as this browser draws them (canvas measureText with the page's font), for the ring
// layout. Falls back to the layout's estimate where there is no canvas (server-side rendering).
import { estimateTextWidth, type MeasureText } from "./logic/ring-layout.ts";

/** Labels are drawn at weight 500, link labels at 600: measure at the heavier one. */
const FONT_WEIGHT = 600;
/** A little room for sub-pixel differences between canvas and SVG text. */
const SAFETY = 1.04;
/** Widths remembered (names come and go; the cache starts over past this). */
const CACHE_MAX = 5_000;

let cached: MeasureText | undefined;

export function browserTextWidth(): MeasureText {
  if (cached !== undefined) return cached;
  const context = typeof document === "undefined" ? null : document.createElement("canvas").getContext("2d");
  if (context === null) return estimateTextWidth;
  const family = getComputedStyle(document.body).fontFamily || "sans-serif";
  const widths = new Map<string, number>();
  cached = (text, fontSize) => {
    const key = `${fontSize}\u0000${text}`;
    let width = widths.get(key);
    if (width === undefined) {
      context.font = `${FONT_WEIGHT} ${fontSize}px ${family}`;
      width = context.measureText(text).width * SAFETY + 1;
      if (widths.size >= CACHE_MAX) widths.clear();
      widths.set(key, width);
    }
    return width;
  };
  return cached;
}
