// Where to draw the ring: nodes on a circle in ring order (clockwise from the top), each link an arc
// to the right neighbour, labels placed so they never overlap, from 1 peer to 64 and more. Pure:
// text widths come from a `measure` function: the browser's own (canvas) on the page, an estimate
// from character counts in Node, so the layout is testable without a browser.
import { truncate } from "./format.ts";

export type Point = { x: number; y: number };
/** A label's estimated outline: four corners in order (a rotated rectangle). */
export type Quad = [Point, Point, Point, Point];

export type RingNodeInput = { id: string; label: string };
export type RingLinkInput = { from: string; to: string; text?: string | undefined; bytesPerSecond?: number | undefined };

export type RingNode = {
  id: string;
  /** Position in the ring, 0-based. */
  index: number;
  /** The label as drawn (maybe cut short); the full one goes in a tooltip. */
  label: string;
  fullLabel: string;
  x: number;
  y: number;
  labelX: number;
  labelY: number;
  anchor: "start" | "middle" | "end";
  /** Degrees to rotate the label about (labelX, labelY). */
  rotate: number;
  quad: Quad;
};

export type RingEdge = {
  from: string;
  to: string;
  index: number;
  /** SVG path of the arc from `from` to `to`, clockwise: between the nodes, or inside the ring when they are packed. */
  path: string;
  /** Angle the arc covers (radians, always > 0). */
  span: number;
  bytesPerSecond: number | undefined;
  /** Throughput relative to the fastest link, 0..1 (undefined when not measured). */
  relative: number | undefined;
  text: string | undefined;
  labelX: number;
  labelY: number;
  quad: Quad | undefined;
};

export type RingLayout = {
  /** The drawing is `width` x `height` (SVG viewBox). */
  width: number;
  height: number;
  cx: number;
  cy: number;
  radius: number;
  nodeRadius: number;
  fontSize: number;
  linkFontSize: number;
  mode: "empty" | "single" | "horizontal" | "radial";
  /** Nodes are big enough to carry their ring position as a number. */
  showIndex: boolean;
  /** Link throughputs fit as labels on the drawing (else they are in the table and the tooltips). */
  showLinkLabels: boolean;
  /**
   * "arc": each link an arrow along the ring from node to node. "band": the nodes are packed too
   * tight for that, so each link is a coloured segment just inside the ring (clockwise, no arrow).
   */
  linkStyle: "arc" | "band";
  nodes: RingNode[];
  edges: RingEdge[];
};

/** Up to this many peers, labels are horizontal around the circle; beyond, they point outwards. */
export const HORIZONTAL_MAX = 8;
/** Estimated width of a character, as a fraction of the font size (wide fonts' digits, with margin). */
export const CHAR_WIDTH = 0.72;
/** Estimated height of a label, as a multiple of the font size. */
const LINE_HEIGHT = 1.25;
const MARGIN = 8;
/** Shortest arc worth an arrowhead, in px. */
const MIN_ARROW_PX = 12;
/** Gap between neighbouring link segments in "band" style, in px. */
const BAND_GAP_PX = 1.5;

/** Width of `text` drawn at `fontSize` px. */
export type MeasureText = (text: string, fontSize: number) => number;

/** Without a browser: a generous estimate from the number of characters. */
export const estimateTextWidth: MeasureText = (text, fontSize) => [...text].length * CHAR_WIDTH * fontSize;

export function layoutRing(peers: readonly RingNodeInput[], links: readonly RingLinkInput[] = [], textWidth: MeasureText = estimateTextWidth): RingLayout {
  const n = peers.length;
  if (n === 0) {
    return { width: 200, height: 200, cx: 100, cy: 100, radius: 0, nodeRadius: 0, fontSize: 13, linkFontSize: 11, mode: "empty", showIndex: false, showLinkLabels: false, linkStyle: "arc", nodes: [], edges: [] };
  }
  const horizontal = n <= HORIZONTAL_MAX;
  const fontSize = horizontal ? 13 : n <= 24 ? 11 : 10;
  const linkFontSize = horizontal ? 11 : 10;
  const nodeRadius = n <= 8 ? 16 : n <= 16 ? 10 : n <= 32 ? 7 : 5;
  const maxChars = horizontal ? 16 : n <= 24 ? 14 : 12;
  const labels = peers.map((p) => truncate(p.label, maxChars));
  const widest = Math.max(40, ...labels.map((label) => textWidth(label, fontSize)));
  const height = LINE_HEIGHT * fontSize;

  if (n === 1) {
    const width = Math.max(200, widest + 2 * MARGIN);
    const c = width / 2;
    const cy = MARGIN + nodeRadius;
    const peer = peers[0] as RingNodeInput;
    const labelY = cy + nodeRadius + 6 + height / 2;
    const w = textWidth(labels[0] as string, fontSize);
    return {
      width, height: labelY + height / 2 + MARGIN, cx: c, cy, radius: 0, nodeRadius, fontSize, linkFontSize, mode: "single", showIndex: true, showLinkLabels: false, linkStyle: "arc",
      nodes: [{ id: peer.id, index: 0, label: labels[0] as string, fullLabel: peer.label, x: c, y: cy, labelX: c, labelY, anchor: "middle", rotate: 0, quad: rect(c - w / 2, labelY - height / 2, w, height) }],
      edges: [],
    };
  }

  // Radial labels need one line height of arc each where they start; horizontal ones need room.
  const radius = horizontal ? 150 : Math.max(110, (n * (height + 3)) / (2 * Math.PI) - nodeRadius - 5);
  const labelStart = radius + nodeRadius + 5;
  // Horizontal labels stick out sideways by their width but up and down by one line only.
  const width = 2 * (labelStart + widest + MARGIN);
  const drawingHeight = horizontal ? 2 * (labelStart + height + MARGIN) : width;
  const c = width / 2;
  const cy = drawingHeight / 2;
  const angleOf = (i: number) => -Math.PI / 2 + (2 * Math.PI * i) / n;

  const nodes: RingNode[] = peers.map((peer, i) => {
    const a = angleOf(i);
    const u = { x: Math.cos(a), y: Math.sin(a) };
    const label = labels[i] as string;
    const w = textWidth(label, fontSize);
    const start = { x: c + labelStart * u.x, y: cy + labelStart * u.y };
    const node = { id: peer.id, index: i, label, fullLabel: peer.label, x: c + radius * u.x, y: cy + radius * u.y };
    if (horizontal) {
      const anchor = u.x > 0.35 ? "start" : u.x < -0.35 ? "end" : "middle";
      const centerY = start.y + (anchor === "middle" ? Math.sign(u.y) * (height / 2) : 0);
      const left = anchor === "start" ? start.x : anchor === "end" ? start.x - w : start.x - w / 2;
      return { ...node, labelX: start.x, labelY: centerY, anchor, rotate: 0, quad: rect(left, centerY - height / 2, w, height) };
    }
    // Outward along the radius; on the left half turned by 180° so the text still reads left to right.
    const degrees = (a * 180) / Math.PI;
    const leftHalf = u.x < -1e-9;
    const v = { x: -u.y, y: u.x };
    const quad: Quad = [
      add(start, v, -height / 2),
      add(start, v, height / 2),
      add(add(start, u, w), v, height / 2),
      add(add(start, u, w), v, -height / 2),
    ];
    return { ...node, labelX: start.x, labelY: start.y, anchor: leftHalf ? "end" : "start", rotate: leftHalf ? degrees + 180 : degrees, quad };
  });

  const byPair = new Map(links.map((link) => [`${link.from}\u0000${link.to}`, link]));
  const fastest = Math.max(0, ...links.map((link) => link.bytesPerSecond ?? 0));
  const step = (2 * Math.PI) / n;
  // An arrow needs some length between two nodes; else links go on a circle just inside the ring.
  const arcGap = (nodeRadius + 4) / radius;
  const linkStyle = (step - 2 * arcGap) * radius >= MIN_ARROW_PX ? "arc" : "band";
  const linkRadius = linkStyle === "arc" ? radius : radius - nodeRadius - 5;
  const gap = linkStyle === "arc" ? arcGap : BAND_GAP_PX / linkRadius;
  const inner = radius - nodeRadius - 14;
  const edges: RingEdge[] = peers.map((peer, i) => {
    const to = peers[(i + 1) % n] as RingNodeInput;
    const a0 = angleOf(i) + gap;
    const a1 = angleOf(i + 1) - gap;
    const mid = angleOf(i + 0.5);
    const link = byPair.get(`${peer.id}\u0000${to.id}`);
    const text = link?.text;
    const labelX = c + inner * Math.cos(mid);
    const labelY = cy + inner * Math.sin(mid);
    const w = text === undefined ? 0 : textWidth(text, linkFontSize);
    const h = LINE_HEIGHT * linkFontSize;
    return {
      from: peer.id,
      to: to.id,
      index: i,
      path: `M ${fmt(c + linkRadius * Math.cos(a0))} ${fmt(cy + linkRadius * Math.sin(a0))} A ${fmt(linkRadius)} ${fmt(linkRadius)} 0 0 1 ${fmt(c + linkRadius * Math.cos(a1))} ${fmt(cy + linkRadius * Math.sin(a1))}`,
      span: a1 - a0,
      bytesPerSecond: link?.bytesPerSecond,
      relative: link?.bytesPerSecond === undefined || fastest <= 0 ? undefined : link.bytesPerSecond / fastest,
      text,
      labelX,
      labelY,
      quad: text === undefined ? undefined : rect(labelX - w / 2, labelY - h / 2, w, h),
    };
  });
  // Link labels sit inside the circle at the arcs' middles; they fit when neighbours cannot touch.
  const widestLink = Math.max(0, ...edges.map((e) => (e.text === undefined ? 0 : textWidth(e.text, linkFontSize))));
  const spacing = 2 * inner * Math.sin(Math.PI / n);
  const showLinkLabels = widestLink > 0 && spacing >= Math.hypot(widestLink, LINE_HEIGHT * linkFontSize) + 4 && inner > widestLink / 2;
  return { width, height: drawingHeight, cx: c, cy, radius, nodeRadius, fontSize, linkFontSize, mode: horizontal ? "horizontal" : "radial", showIndex: nodeRadius >= 10, showLinkLabels, linkStyle, nodes, edges };
}

function add(p: Point, d: Point, k: number): Point {
  return { x: p.x + d.x * k, y: p.y + d.y * k };
}

function rect(x: number, y: number, w: number, h: number): Quad {
  return [{ x, y }, { x: x + w, y }, { x: x + w, y: y + h }, { x, y: y + h }];
}

const fmt = (x: number) => (Math.round(x * 100) / 100).toString();

/** Whether two convex quads overlap (separating axis test); touching edges do not count. */
export function quadsOverlap(a: Quad, b: Quad): boolean {
  for (const quad of [a, b]) {
    for (let i = 0; i < 4; i++) {
      const p = quad[i] as Point;
      const q = quad[(i + 1) % 4] as Point;
      const axis = { x: q.y - p.y, y: p.x - q.x };
      const project = (points: Quad) => points.map((r) => r.x * axis.x + r.y * axis.y);
      const pa = project(a);
      const pb = project(b);
      if (Math.max(...pa) <= Math.min(...pb) + 1e-6 || Math.max(...pb) <= Math.min(...pa) + 1e-6) return false;
    }
  }
  return true;
}
