import type { Member, MemberState } from "@crowdtrain/coordination";
import { BackendSchema } from "@crowdtrain/protocol";
import { Gauge, type Registry } from "prom-client";
import { METRIC_PREFIX } from "./registry.ts";

/** Every member state, so an empty one reads 0 rather than vanishing (a Record: the build fails on a new state). */
const STATES: Record<MemberState, true> = { joining: true, ready: true, training: true, serving: true };

/**
 * Members by backend and state, counted from the coordinator at scrape time (O(members)), so the
 * gauge can never drift from what /api/status shows. Labels are the protocol's fixed backends and
 * states, never peer ids: those are unbounded, and name volunteers.
 */
export function registerPeerGauge(registers: Registry[], members: () => readonly Readonly<Member>[]): void {
  new Gauge({
    name: `${METRIC_PREFIX}peers`,
    help: "Members of the job now, by compute backend and coordinator state.",
    labelNames: ["backend", "state"] as const,
    registers,
    collect() {
      this.reset();
      for (const backend of BackendSchema.options) for (const state of Object.keys(STATES)) this.set({ backend, state }, 0);
      for (const member of members()) this.inc({ backend: member.backend, state: member.state });
    },
  });
}
