// All-reduce primitives for e2e tests and benchmarks: one PeerJS peer per page with the real
// p2p transport and AllReducer, deterministic inputs the test can recompute, and a one-way
// point-to-point blast over the same links to measure the link the ring is compared with. The
// all-reducer listens on the transport's "allreduce" channel, the blast travels on "bench": the
// transport keeps them apart, so neither ever sees the other's frames.
import { AllReduceError, createAllReducer, resolveOptions, type AllReducer, type AllReduceOptions } from "@crowdtrain/allreduce";
import { createPeerTransport, resolvePeerTransportOptions, type PeerTransport, type PeerTransportOptions } from "@crowdtrain/p2p";
import { planGrid } from "@crowdtrain/protocol";
import { openLabPeer } from "./identity.ts";
import type { Peer } from "peerjs";
import type { AllReduceRun, ArRunArgs, BlastReport } from "../lab-api.ts";
import { labInput } from "./input.ts";
import { withTimeout } from "../wait.ts";

type Lab = { peer: Peer; transport: PeerTransport; reducer: AllReducer };
let lab: Lab | undefined;

export async function arOpen(options: Partial<AllReduceOptions & PeerTransportOptions> = {}): Promise<string> {
  if (lab !== undefined) throw new Error("arOpen() was already called on this page");
  const { frameBytes, progressTimeoutMs, ringStartTimeoutMs, roundTimeoutMs, maxBufferedFutureBytes, ...transportOptions } = options;
  const reducerOptions = Object.fromEntries(
    Object.entries({ frameBytes, progressTimeoutMs, ringStartTimeoutMs, roundTimeoutMs, maxBufferedFutureBytes }).filter(([, value]) => value !== undefined),
  );
  // Refuse bad options (a frame too large for one channel message, say) before opening anything.
  resolveOptions(reducerOptions);
  resolvePeerTransportOptions(transportOptions);
  const peer = await openLabPeer();
  peer.on("error", (error) => console.error(`lab: PeerJS error (${error.type}): ${error.message}`));
  const transport = createPeerTransport(peer, transportOptions);
  transport.onViolation((from, violation) => console.error(`lab: dropped a message from ${from} (${violation.kind}): ${violation.detail}`));
  const reducer = createAllReducer({ transport: transport.channel("allreduce"), options: reducerOptions });
  lab = { peer, transport, reducer };
  return peer.id;
}

function need(): Lab {
  if (lab === undefined) throw new Error("call arOpen() first");
  return lab;
}

export async function arConnect(peers: string[]): Promise<void> {
  await need().transport.connect(peers);
}

/** The grid and attached members of a torus of `members` with `columns` a row, as the coordinator's plans lay them out. */
function torusOf(members: string[], columns: number): { rows: string[][]; attached: string[] } {
  const rows: string[][] = [];
  const full = Math.floor(members.length / columns);
  for (let r = 0; r < full; r++) rows.push(members.slice(r * columns, (r + 1) * columns));
  return { rows, attached: members.slice(full * columns) };
}

/**
 * Runs one all-reduce round on labInput(seed, length) weighted by `samples`. Waits until
 * `startAt` (Date.now() of this machine, shared by every tab) so all tabs start together, and
 * times the round from there. Failures come back as data, with the error's code and suspect.
 */
export async function arRun(args: ArRunArgs): Promise<AllReduceRun> {
  const { reducer } = need();
  const gradient = labInput(args.seed, args.length);
  const wait = (args.startAt ?? 0) - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  const started = performance.now();
  try {
    const common = { attempt: args.attempt, gradient, samples: args.samples };
    const result =
      args.dims !== undefined
        ? await reducer.allReduceGrid({ ...common, ...planGrid({ kind: "groups", members: args.ring, dims: args.dims }) })
        : args.columns !== undefined
          ? await reducer.allReduceTorus({ ...common, ...torusOf(args.ring, args.columns) })
          : await reducer.allReduce({ ...common, ring: args.ring });
    const mean = result.mean;
    return {
      ok: true,
      ms: performance.now() - started,
      hash: await digest(mean),
      head: Array.from(mean.subarray(0, 16)),
      totalSamples: result.totalSamples,
      bytesSent: result.stats.bytesSent,
      framesSent: result.stats.framesSent,
    };
  } catch (error) {
    if (!(error instanceof AllReduceError)) throw error;
    return { ok: false, ms: performance.now() - started, error: error.toJSON() };
  }
}

/** Sends `bytes` in frames of `frameBytes` to `to` on the "bench" channel, as fast as back-pressure allows. */
export async function arBlast(to: string, bytes: number, frameBytes: number): Promise<void> {
  const bench = need().transport.channel("bench");
  for (let sent = 0; sent < bytes; sent += frameBytes) {
    await bench.send(to, new Uint8Array(Math.min(frameBytes, bytes - sent)));
  }
}

let blastWait: Promise<BlastReport> | undefined;

/**
 * Starts counting blast bytes from `from` (call it before the sender starts, or early frames are
 * missed); arBlastDone() then resolves with the time from this call until `bytes` have arrived.
 */
export function arListenBlast(from: string, bytes: number, timeoutMs: number): void {
  const bench = need().transport.channel("bench");
  const started = performance.now();
  let received = 0;
  let unsubscribe: (() => void) | undefined;
  const done = new Promise<BlastReport>((resolve) => {
    unsubscribe = bench.onFrame((peer, frame) => {
      if (peer !== from) return;
      received += frame.byteLength;
      if (received >= bytes) resolve({ bytes: received, ms: performance.now() - started });
    });
  });
  blastWait = withTimeout(done, timeoutMs, `blast of ${bytes} bytes from ${from}`).finally(() => unsubscribe?.());
  // Whoever calls arBlastDone() sees a failure; this only keeps it from being reported as unhandled.
  blastWait.catch(() => undefined);
}

export function arBlastDone(): Promise<BlastReport> {
  if (blastWait === undefined) throw new Error("call arListenBlast() first");
  const wait = blastWait;
  blastWait = undefined;
  return wait;
}

/** Frames and bytes received over all links so far: lets a test act "mid-round". */
export function arProgress(): { framesReceived: number; bytesReceived: number } {
  let framesReceived = 0;
  let bytesReceived = 0;
  for (const link of Object.values(need().transport.linkStats())) {
    framesReceived += link.framesReceived;
    bytesReceived += link.bytesReceived;
  }
  return { framesReceived, bytesReceived };
}

export function arClose(): void {
  if (lab === undefined) return;
  lab.reducer.close();
  lab.transport.close();
  lab.peer.destroy();
  lab = undefined;
}

async function digest(values: Float32Array): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", values.slice().buffer);
  return Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("");
}
