import { describe, expect, it } from "vitest";
import { layoutRing, quadsOverlap, type Quad, type RingLayout } from "../src/logic/ring-layout.ts";

/** Names as volunteers might pick them: some long, some short, some wide characters. */
const label = (i: number) => ["ada", "grace hopper the great", "WWWWWWWWWWWWWWWWWWWW", "x", "<b>bold</b><img src=x>"][i % 5] as string;
const peers = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `peer-${i}`, label: `${label(i)}${i}` }));
const links = (n: number) => peers(n).map((p, i) => ({ from: p.id, to: `peer-${(i + 1) % n}`, text: "123.4 MB/s", bytesPerSecond: 1e6 * (1 + (i % 3)) }));

function inside(layout: RingLayout, quad: Quad): boolean {
  return quad.every((p) => p.x >= 0 && p.y >= 0 && p.x <= layout.width && p.y <= layout.height);
}

describe("layoutRing", () => {
  it("is empty without peers, and one node in the middle for a ring of one", () => {
    expect(layoutRing([]).nodes).toEqual([]);
    const one = layoutRing(peers(1));
    expect(one.mode).toBe("single");
    expect(one.edges).toEqual([]);
    expect(one.nodes[0]).toMatchObject({ x: one.width / 2, y: one.cy });
  });

  it("puts the peers clockwise from the top in ring order, each link an arc to its right neighbour", () => {
    const layout = layoutRing(peers(4), links(4));
    const [top, right, bottom, left] = layout.nodes;
    expect(top?.y).toBeLessThan(layout.cy);
    expect(right?.x).toBeGreaterThan(layout.cx);
    expect(bottom?.y).toBeGreaterThan(layout.cy);
    expect(left?.x).toBeLessThan(layout.cx);
    expect(layout.edges.map((e) => `${e.from}>${e.to}`)).toEqual(["peer-0>peer-1", "peer-1>peer-2", "peer-2>peer-3", "peer-3>peer-0"]);
    expect(layout.edges.every((e) => / A [\d.]+ [\d.]+ 0 0 1 /.test(e.path))).toBe(true);
    expect(layout.edges.map((e) => e.relative)).toEqual([1 / 3, 2 / 3, 1, 1 / 3]);
  });

  it("is wider than high for a few peers, whose labels stick out sideways", () => {
    const layout = layoutRing(peers(3), links(3));
    expect(layout.mode).toBe("horizontal");
    expect(layout.height).toBeLessThan(layout.width);
  });

  it("draws two separate arcs for a ring of two", () => {
    const layout = layoutRing(peers(2), links(2));
    expect(layout.edges).toHaveLength(2);
    expect(layout.edges[0]?.path).not.toBe(layout.edges[1]?.path);
    expect(layout.showLinkLabels).toBe(true);
  });

  it("leaves links without a measurement unlabelled and uncoloured", () => {
    const layout = layoutRing(peers(3), []);
    expect(layout.edges.every((e) => e.relative === undefined && e.text === undefined)).toBe(true);
    expect(layout.showLinkLabels).toBe(false);
  });

  it.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 17, 24, 25, 32, 33, 48, 64, 100])("with %i peers: no two labels overlap, and everything is inside the drawing", (n) => {
    const layout = layoutRing(peers(n), links(n));
    const quads: Quad[] = layout.nodes.map((node) => node.quad);
    if (layout.showLinkLabels) for (const edge of layout.edges) if (edge.quad !== undefined) quads.push(edge.quad);
    for (const quad of quads) expect(inside(layout, quad)).toBe(true);
    for (let i = 0; i < quads.length; i++) {
      for (let j = i + 1; j < quads.length; j++) {
        expect(quadsOverlap(quads[i] as Quad, quads[j] as Quad), `labels ${i} and ${j} of ${n}`).toBe(false);
      }
    }
    for (const node of layout.nodes) {
      expect(node.x - layout.nodeRadius).toBeGreaterThanOrEqual(0);
      expect(node.y - layout.nodeRadius).toBeGreaterThanOrEqual(0);
      expect(node.x + layout.nodeRadius).toBeLessThanOrEqual(layout.width);
      expect(node.y + layout.nodeRadius).toBeLessThanOrEqual(layout.height);
      expect(node.label.length).toBeGreaterThan(0);
    }
    // Every link is drawn forwards (clockwise), never backwards over its nodes.
    for (const edge of layout.edges) expect(edge.span).toBeGreaterThan(0);
    // Labels stay legible: a readable font, nodes that can be seen.
    expect(layout.fontSize).toBeGreaterThanOrEqual(10);
    expect(layout.nodeRadius).toBeGreaterThanOrEqual(5);
  });

  it("keeps 64 peers in a drawing that scales down to a card without tiny text", () => {
    const layout = layoutRing(peers(64), links(64));
    expect(layout.mode).toBe("radial");
    // Shown about 520 px wide: the 10 px labels are drawn at >= 9 px, and stay apart (previous test).
    expect((520 / layout.width) * layout.fontSize).toBeGreaterThanOrEqual(9);
    expect(layout.showLinkLabels).toBe(false);
    expect(layout.linkStyle).toBe("band");
    expect(layoutRing(peers(8), links(8)).linkStyle).toBe("arc");
  });

  it("detects overlapping and separate quads", () => {
    const square = (x: number, y: number): Quad => [{ x, y }, { x: x + 2, y }, { x: x + 2, y: y + 2 }, { x, y: y + 2 }];
    expect(quadsOverlap(square(0, 0), square(1, 1))).toBe(true);
    expect(quadsOverlap(square(0, 0), square(2, 0))).toBe(false);
    expect(quadsOverlap(square(0, 0), square(5, 5))).toBe(false);
  });
});
