// Pipeline-parallel primitives for the pipeline benchmark: one tab is one stage of one replica. Its
// activations travel on the p2p transport's "activations" channel through the real codec, inbox
// checks and round runner (@crowdtrain/pipeline); after the backward pass the stage averages its
// gradient with the same stage of the other replicas over the "allreduce" channel (hybrid
// parallelism). Inputs and labels are seeded, so no dataset is needed.
import * as tf from "@tensorflow/tfjs";
import { createAllReducer, type AllReducer } from "@crowdtrain/allreduce";
import { createPeerTransport, type PeerTransport } from "@crowdtrain/p2p";
import { microBatchRows, runStageRound, StageCompute, StageInbox } from "@crowdtrain/pipeline";
import { decodeActivationFrame, mulberry32, parseJob } from "@crowdtrain/protocol";
import { buildStage, modelLayers, shapeElements } from "@crowdtrain/training";
import { chooseBackend } from "@crowdtrain/training/browser";
import type { Peer } from "peerjs";
import type { PipeRound, PipeRunArgs } from "../lab-api.ts";
import { openLabPeer } from "./identity.ts";

type Lab = {
  peer: Peer;
  transport: PeerTransport;
  reducer: AllReducer;
  /** The running round's inbox, and its attempt. */
  inbox: StageInbox | undefined;
  attempt: number;
  /** Frames of a later attempt, from a neighbour that started it before this tab did: replayed when it does. */
  early: { attempt: number; from: string; frame: Uint8Array }[];
};
/** Bound on frames held for a round this tab has not started (a neighbour at most a round ahead sends far fewer). */
const MAX_EARLY_FRAMES = 4_096;
let lab: Lab | undefined;
/** Wall-clock milliseconds comparable across the tabs of one machine (busy intervals are joined across stages). */
const wallNow = (): number => performance.timeOrigin + performance.now();

export async function pipeOpen(): Promise<string> {
  if (lab !== undefined) throw new Error("pipeOpen() was already called on this page");
  const peer = await openLabPeer();
  peer.on("error", (error) => console.error(`lab: PeerJS error (${error.type}): ${error.message}`));
  const transport = createPeerTransport(peer, {});
  transport.onViolation((from, violation) => console.error(`lab: dropped a message from ${from} (${violation.kind}): ${violation.detail}`));
  const reducer = createAllReducer({ transport: transport.channel("allreduce"), options: { roundTimeoutMs: 600_000, progressTimeoutMs: 60_000, ringStartTimeoutMs: 60_000 } });
  const opened: Lab = { peer, transport, reducer, inbox: undefined, attempt: 0, early: [] };
  transport.channel("activations").onFrame((from, frame) => {
    let attempt: number;
    try {
      attempt = decodeActivationFrame(frame).attempt;
    } catch (error) {
      console.error(`lab: undecodable activation frame from ${from}: ${(error as Error).message}`);
      return;
    }
    if (attempt > opened.attempt || opened.inbox === undefined) {
      if (opened.early.length >= MAX_EARLY_FRAMES) return console.error(`lab: more than ${MAX_EARLY_FRAMES} frames ahead of this tab's round: dropped one from ${from}`);
      // The view is valid for this call only.
      opened.early.push({ attempt, from, frame: frame.slice() });
      return;
    }
    // A frame of a round that ended here (its sender had not heard yet): nothing waits for it.
    if (attempt < opened.attempt) return console.warn(`lab: dropped a frame of ended round ${attempt} from ${from}`);
    deliver(opened.inbox, from, frame);
  });
  // A neighbour's link closing fails the round at once (NeighbourGone), not at the 30 s timeout.
  transport.onPeerGone((gone, reason) => opened.inbox?.peerGone(gone, reason));
  lab = opened;
  return peer.id;
}

/** deliver throws the violation it also fails the round with; the round's runner reports it. */
function deliver(inbox: StageInbox, from: string, frame: Uint8Array): void {
  try {
    inbox.deliver(from, frame);
  } catch (error) {
    console.error(`lab: activation frame from ${from} refused: ${(error as Error).message}`);
  }
}

function need(): Lab {
  if (lab === undefined) throw new Error("call pipeOpen() first");
  return lab;
}

export async function pipeConnect(peers: string[]): Promise<void> {
  await need().transport.connect(peers);
}

/** Runs `args.rounds` pipeline rounds of this tab's stage; each round starts at its startAt on every tab. */
export async function pipeRun(args: PipeRunArgs): Promise<PipeRound[]> {
  const current = need();
  const backend = await chooseBackend([args.backend]);
  const job = parseJob({ name: "pipe-bench", dataset: "synthetic", model: args.model, optimizer: { kind: "sgd", learningRate: 0.01 }, batchSize: args.rows, rounds: 1 });
  const layers = modelLayers(job.model, args.inputShape, args.classes);
  const cut = args.cuts[args.stage];
  if (cut === undefined) throw new RangeError(`stage ${args.stage} is not one of the ${args.cuts.length} cuts`);
  const shapeAt = (layer: number): readonly number[] => (layer === 0 ? (layers[0]?.inputShape ?? []) : (layers[layer - 1]?.outputShape ?? []));
  const stages = args.cuts.length;
  const first = args.stage === 0;
  const last = args.stage === stages - 1;
  const model = buildStage(layers, cut.from, cut.to, 1);
  const compute = new StageCompute(model);
  const channel = current.transport.channel("activations");
  const rounds: PipeRound[] = [];
  try {
    for (const [i, startAt] of args.startAts.entries()) {
      const microRows = microBatchRows(args.rows, args.microBatches);
      const random = mulberry32(1000 + i);
      const inputs = first ? microRows.map((rows) => tf.tensor(Float32Array.from({ length: rows * shapeElements(args.inputShape) }, () => random() * 2 - 1), [rows, ...args.inputShape])) : undefined;
      const labels = last ? microRows.map((rows, m) => tf.tidy(() => tf.oneHot(tf.tensor1d(Array.from({ length: rows }, (_, r) => (r * 7 + m) % args.classes), "int32"), args.classes).toFloat())) : undefined;
      const attempt = args.attempt + i;
      current.inbox = new StageInbox({
        attempt,
        micros: args.microBatches,
        previous: first ? undefined : { id: args.chain[args.stage - 1] as string, stage: args.stage - 1 },
        next: last ? undefined : { id: args.chain[args.stage + 1] as string, stage: args.stage + 1 },
        inputShapeOf: (m) => [microRows[m] as number, ...shapeAt(cut.from)],
        outputShapeOf: (m) => [microRows[m] as number, ...shapeAt(cut.to)],
      });
      const inbox = current.inbox;
      current.attempt = attempt;
      // Frames a faster neighbour sent for this round before it began here; older ones are dropped.
      const early = current.early.filter((held) => held.attempt >= attempt);
      current.early = early.filter((held) => held.attempt > attempt);
      for (const held of early) if (held.attempt === attempt) deliver(inbox, held.from, held.frame);
      const wait = startAt - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      try {
        const result = await runStageRound({
          compute,
          stage: args.stage,
          stages,
          schedule: args.schedule,
          attempt,
          microRows,
          inputShape: shapeAt(cut.from),
          outputShape: shapeAt(cut.to),
          ...(inputs === undefined ? {} : { inputs }),
          ...(labels === undefined ? {} : { labels }),
          receive: (direction, micro) => inbox.take(direction, micro),
          send: async (direction, frames) => {
            const to = args.chain[direction === "forward" ? args.stage + 1 : args.stage - 1] as string;
            for (const frame of frames) await channel.send(to, frame);
          },
          now: wallNow,
        });
        let gradientBytes = 0;
        const reduceStart = wallNow();
        if (args.replicaPeers.length > 1) {
          const reduced = await current.reducer.allReduce({ attempt, ring: args.replicaPeers, gradient: result.gradient, samples: args.rows });
          gradientBytes = reduced.stats.bytesSent;
        }
        rounds.push({ backend: backend.backend, busy: result.busy.map(({ start, end, kind }) => [start, end, kind]), start: result.span.start, end: result.span.end, reducedAt: wallNow(), reduceMs: wallNow() - reduceStart, activationBytes: result.bytesSent, gradientBytes, gradientLength: result.gradient.length, loss: result.loss ?? null });
      } finally {
        inbox.fail(new Error(`round ${attempt} is over`));
        tf.dispose([...(inputs ?? []), ...(labels ?? [])]);
      }
    }
    return rounds;
  } finally {
    current.inbox = undefined;
    compute.reset();
    model.dispose();
  }
}

export function pipeClose(): void {
  lab?.transport.close();
  lab?.peer.destroy();
  lab = undefined;
}
