import { createAllReducer, DEFAULT_OPTIONS } from "@crowdtrain/allreduce";
import type { Codec } from "@crowdtrain/protocol";
import { groupsShape, torusShape } from "@crowdtrain/coordination";
import type { Link } from "./network.ts";
import { SimNetwork } from "./network.ts";
import { VirtualClock } from "./virtual-clock.ts";

export type AllReduceCase = {
  peers: number;
  /** "ring", "torus" or "groups": the grid the coordinator's plans would pick for `peers` (torusShape, groupsShape). */
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
  const torus = spec.layout === "torus" ? torusShape(spec.peers) : undefined;
  const groups = spec.layout === "groups" ? groupsShape(spec.peers) : undefined;
  const dims = torus !== undefined ? [torus.columns, torus.rows] : groups?.dims;
  if (spec.layout !== "ring" && dims === undefined) throw new RangeError(`${spec.peers} peers form no ${spec.layout} grid`);
  const places = dims?.reduce((product, g) => product * g, 1) ?? 0;
  let finished = 0;
  let slowest = 0;
  const runs = reducers.map((reducer, k) => {
    const gradient = new Float32Array(elements).fill(k + 1);
    const args = { attempt: 1, gradient, samples: 1, codec: spec.codec ?? "dense" };
    const run = dims === undefined ? reducer.allReduce({ ...args, ring: ids }) : reducer.allReduceGrid({ ...args, members: ids.slice(0, places), dims, attached: ids.slice(places) });
    return run.then(() => {
      finished++;
      slowest = Math.max(slowest, clock.now());
    });
  });
  await clock.run(() => finished === ids.length, 24 * 3_600_000);
  await Promise.all(runs);
  for (const reducer of reducers) reducer.close();
  return slowest;
}
