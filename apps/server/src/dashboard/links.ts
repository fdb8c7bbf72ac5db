import type { RingLink } from "@crowdtrain/protocol";

/** The part of a round report that the link throughput is derived from. */
export type LinkReport = { bytesSent: number; timings: { allReduceMs: number } };

/**
 * Per-link throughput of a committed round. In a ring all-reduce every peer sends only to its right
 * neighbour (ring[i] -> ring[i+1], the last to the first), so what a peer reports as sent during
 * the all-reduce, over its all-reduce time, is the throughput of its outgoing link. A ring of one
 * has no links; a peer without a report (cannot happen for a committed round) gives no link.
 */
export function ringLinks(ring: readonly string[], reports: ReadonlyMap<string, LinkReport>): RingLink[] {
  if (ring.length < 2) return [];
  const links: RingLink[] = [];
  ring.forEach((from, i) => {
    const report = reports.get(from);
    if (report === undefined) return;
    const to = ring[(i + 1) % ring.length] as string;
    const ms = report.timings.allReduceMs;
    const link: RingLink = { from, to, bytes: report.bytesSent, ms };
    if (ms > 0) link.bytesPerSecond = report.bytesSent / (ms / 1000);
    links.push(link);
  });
  return links;
}
