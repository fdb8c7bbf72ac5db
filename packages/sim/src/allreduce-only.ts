import { createAllReducer, DEFAULT_OPTIONS, type AllReducer, type RoundResult } from "@crowdtrain/allreduce";
import { planGrid, type Codec, type Plan } from "@crowdtrain/protocol";
import { buildPlan } from "@crowdtrain/coordination";
import type { Link } from "./network.ts";
import { SimNetwork } from "./network.ts";
import { VirtualClock } from "./virtual-clock.ts";

export type AllReduceCase = {
  peers: number;
  /** "ring", "torus" or "groups": the plan the coordinator would pick for `peers` with that topology (buildPlan). */
  layout: "ring" | "torus" | "groups";
  /** Bytes of the vector (float32). */
  bytes: number;
  frameBytes: number;
  link: Link;
  codec?: Exclude<Codec, "topk">;
};

/** The stand-in vector's length: enough chunks per segment to pipeline like the real one. */
const STAND_IN_ELEMENTS = 16_384;

/**
 * One all-reduce among identical peers, started at the same instant, in virtual time: what the
 * simulator predicts a benchmark measures (bench:allreduce's round time is the slowest tab's).
 * Returns the slowest member's ms.
 */
export async function simulateAllReduce(spec: AllReduceCase, settle: () => Promise<void>): Promise<number> {
  const clock = new VirtualClock(settle);
  const elements = Math.min(STAND_IN_ELEMENTS, spec.bytes / 4);
  const scale = spec.bytes / 4 / elements;
  const network = new SimNetwork(clock, { payloadScale: scale, goneAfterMs: 1_000 });
  const ids = Array.from({ length: spec.peers }, (_, k) => `p${k}`);
  const frameBytes = Math.max(4, 4 * Math.floor(spec.frameBytes / scale / 4));
  const reducers = ids.map((id) => createAllReducer({ transport: network.add(id, spec.link), clock, options: { ...DEFAULT_OPTIONS, frameBytes, ringStartTimeoutMs: 600_000, roundTimeoutMs: 3_600_000 } }));
  const codec = spec.codec ?? "dense";
  const plan = buildPlan(ids, { aggregation: "mean", codec, topology: spec.layout });
  if (spec.layout !== "ring" && plan.kind === "ring") throw new RangeError(`${spec.peers} peers form no ${spec.layout} grid`);
  let finished = 0;
  let slowest = 0;
  const runs = reducers.map((reducer, k) => {
    const gradient = new Float32Array(elements).fill(k + 1);
    return reduceByPlan(reducer, plan, { attempt: 1, gradient, samples: 1, codec }).then(() => {
      finished++;
      slowest = Math.max(slowest, clock.now());
    });
  });
  await clock.run(() => finished === ids.length, 24 * 3_600_000);
  await Promise.all(runs);
  for (const reducer of reducers) reducer.close();
  return slowest;
}

/** One all-reduce as a worker runs a mean's plan: a torus or groups grid (planGrid), else its members as a ring. */
export function reduceByPlan(reducer: AllReducer, plan: Plan, args: { attempt: number; gradient: Float32Array; samples: number; frameBytes?: number; codec: Exclude<Codec, "topk"> }): Promise<RoundResult> {
  return plan.kind === "torus" || plan.kind === "groups" ? reducer.allReduceGrid({ ...args, ...planGrid(plan) }) : reducer.allReduce({ ...args, ring: [...plan.members] });
}
