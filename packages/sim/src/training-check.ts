import type { Topology } from "@crowdtrain/protocol";
import type { Link } from "./network.ts";
import { median } from "./median.ts";
import { standInParams, Swarm } from "./swarm.ts";
import { VirtualClock } from "./virtual-clock.ts";

/**
 * Real tabs training, as `bench:train` measured them at `peers` tabs: the medians of each tab's
 * local work per round (ms) for its share of `batch`, and the links and model they trained.
 */
export type TrainingCase = {
  peers: number;
  batch: number;
  computeMs: number;
  readbackMs: number;
  updateMs: number;
  /** Every tab's link (the ring links' bandwidth bench:allreduce measured at the same N, all busy at once). */
  link: Link;
  modelParams: number;
  /** Bytes per parameter of the committed state (12 with Adam: weights and two moments). */
  stateBytesPerParam: number;
  topology: Topology;
};

/** The time from one commit to the next (what bench:train's `intervalMs` measures), its all-reduce, and the plan run. */
export type TrainingPrediction = { intervalMs: number; allReduceMs: number; plan: string };

/** Rounds simulated; the median commit-to-commit time of the last ones is the prediction. */
const ROUNDS = 6;
/** Far beyond six rounds of any bench:train run: a run that needs it has failed. */
const MAX_VIRTUAL_MS = 3_600_000;
/** Identical peers draw nothing from it but the stand-in gradients' values. */
const SEED = 1;

/**
 * What the simulator predicts for a bench:train run: N identical peers with the measured local work
 * (compute and read-back as the compute speed, the optimizer step as `updateMs`), leases ahead as
 * the server hands them, the real coordinator and all-reducers on the measured links. The inputs
 * are the tabs' own work; the simulator adds the all-reduce, the messages and the commit. With leases
 * ahead the messages and commit hide behind the next lease, so in practice the prediction is the
 * inputs plus the simulated all-reduce (packages/sim/README.md, Validation).
 */
export async function simulateTraining(spec: TrainingCase, settle: () => Promise<void>): Promise<TrainingPrediction> {
  if (spec.batch % spec.peers !== 0) throw new RangeError(`a batch of ${spec.batch} does not split evenly over ${spec.peers} peers`);
  const perPeerBatch = spec.batch / spec.peers;
  const samplesPerSecond = (perPeerBatch * 1000) / (spec.computeMs + spec.readbackMs);
  const fixed = (median: number) => ({ median, sigma: 0 });
  const result = await new Swarm(
    {
      peers: spec.peers,
      topology: spec.topology,
      codec: "dense",
      innerSteps: 1,
      perPeerBatch,
      leaseAhead: true,
      updateMs: spec.updateMs,
      modelParams: spec.modelParams,
      simulatedParams: standInParams("dense", spec.modelParams),
      stateBytes: spec.modelParams * spec.stateBytesPerParam,
      population: {
        upBps: fixed(spec.link.upBps),
        downOverUp: spec.link.downBps / spec.link.upBps,
        rttMs: fixed(spec.link.rttMs),
        samplesPerSecond: fixed(samplesPerSecond),
        stragglerSlowdown: 1,
        stragglerShare: 0,
      },
      departuresPerMinute: 0,
      joinsPerMinute: 0,
      rounds: ROUNDS,
      maxVirtualMs: MAX_VIRTUAL_MS,
      seed: SEED,
    },
    new VirtualClock(settle),
  ).run();
  // The first measured round follows the start (every peer computing its first lease at once): the later ones are the steady state.
  const steady = result.rounds.slice(1);
  const intervals = steady.slice(1).map((r, k) => r.committedAt - steady[k]!.committedAt);
  return { intervalMs: median(intervals), allReduceMs: median(steady.map((r) => r.allReduceMs)), plan: steady[0]?.plan ?? "none" };
}
