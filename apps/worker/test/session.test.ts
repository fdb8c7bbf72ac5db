// The session driver against the in-memory network (real all-reducers) and a fake trainer: what a
// tab does end to end, without a browser. The coordinator is played by the test through a fake
// connection.
import { afterEach, describe, expect, it } from "vitest";
import { createAllReducer } from "@crowdtrain/allreduce";
import { parseWorkerMessage, PROTOCOL_VERSION, type CoordinatorMessage, type Identity, type Job, type WorkerMessage } from "@crowdtrain/protocol";
import { hashState } from "@crowdtrain/training";
import { createMemoryNetwork, type MemoryNetwork } from "../../../packages/allreduce/test/memory-network.ts";
import type { ConnectionEvents } from "../src/session/connection.ts";
import { startSession, type PeerLink, type Session } from "../src/session/session.ts";
import type { SessionStatus } from "../src/session/status.ts";
import type { GradientReport, StageOutcome, StageTask, Trainer } from "../src/trainer/api.ts";

const WAIT_MS = 5_000;
const SIZE = 6;
const JOB = { name: "t", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1, momentum: 0 }, batchSize: 8, rounds: 10, evalEveryRounds: 10, seed: 1, aggregation: "mean", spotCheck: 0 } as Job;
const identity = (peerId: string): Identity => ({ peerId, sessionToken: "s".repeat(22), peerKey: "k".repeat(22), peerToken: "t".repeat(22) });
const NO_OPTIMIZER = { kind: "sgd" as const, step: 0, scalars: [], buffers: [] };

/** A trainer without a model: the gradient is a function of the lease, the update plain SGD. */
class FakeTrainer implements Trainer {
  weights: Float32Array = new Float32Array(SIZE);
  pending: { attempt: number; weights: Float32Array } | undefined;
  /** When set, computeGradient waits for it (a slow device). */
  gate: Promise<void> | undefined;
  /** Makes the next gradients wait until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    this.gate = new Promise((resolve) => (release = resolve));
    return release;
  }
  selectBackend = async () => ({ backend: "cpu", tried: [] });
  init = async () => ({ weightCount: SIZE });
  loadState = async (bytes: ArrayBuffer) => {
    this.weights = new Float32Array(SIZE);
    this.pending = undefined;
    return { round: new DataView(bytes).getUint32(0, true), hash: hashState(this.weights, NO_OPTIMIZER) };
  };
  computeGradient = async (lease: number[]): Promise<GradientReport> => {
    await this.gate;
    const gradient = Float32Array.from({ length: SIZE }, (_, i) => lease.reduce((sum, x) => sum + x, 0) + i);
    return { gradient, loss: 1, samples: lease.length, computeMs: 1, readbackMs: 0 };
  };
  /** A pipeline stage: the gradient of the lease as above, and the port's messages recorded (a real stage's are the bridge tests'). */
  stageTasks: StageTask[] = [];
  computeStage = async (task: StageTask, port: MessagePort): Promise<StageOutcome> => {
    this.stageTasks.push(task);
    port.close();
    return { ok: true, report: { ...(await this.computeGradient(task.lease)), activationBytes: 0 } };
  };
  applyUpdate = async (attempt: number, mean: Float32Array) => {
    const weights = this.weights.map((w, i) => w - 0.1 * (mean[i] as number));
    this.pending = { attempt, weights };
    return { hash: hashState(weights, NO_OPTIMIZER), updateMs: 0 };
  };
  commit = async (attempt: number, round: number) => {
    if (this.pending?.attempt !== attempt) throw new Error(`nothing pending for ${attempt}`);
    this.weights = this.pending.weights;
    this.pending = undefined;
    return { round, hash: hashState(this.weights, NO_OPTIMIZER), uploadMs: 0 };
  };
  discard = async (attempt: number) => {
    if (this.pending?.attempt === attempt) this.pending = undefined;
  };
  exportState = async () => new ArrayBuffer(8);
  exportPending = async () => new ArrayBuffer(8);
  /** One output per row: the row's sum plus the first weight (so a hot swap shows). */
  predict = async (inputs: Float32Array, rows: number) => {
    const features = inputs.length / rows;
    const outputs = Float32Array.from({ length: rows }, (_, r) => inputs.subarray(r * features, (r + 1) * features).reduce((a, b) => a + b, 0) + (this.weights[0] as number));
    return { outputs, round: 0, ms: 0 };
  };
  dispose = async () => undefined;
}

/** One tab: its session, its fake socket (the test is the coordinator), its trainer. */
class Tab {
  readonly trainer = new FakeTrainer();
  readonly sent: WorkerMessage[] = [];
  events!: ConnectionEvents;
  status: SessionStatus | undefined;
  readonly session: Session;
  closedLinks = 0;
  /** When set, state downloads fail (the server unreachable). */
  stateUnreachable = false;
  /** Spot-check uploads, by round; `answerAudits` settles them (default: at once). */
  readonly audited: number[] = [];
  answerAudits: () => Promise<void> = async () => undefined;
  /** The reason the session closed its connection with, once it has. */
  closedWith: string | undefined;
  /** When set, closing the peer link throws (a link broken with the device). */
  linkCloseThrows = false;

  constructor(network: MemoryNetwork, timeouts: { owedUploadsTimeoutMs?: number; leavingTimeoutMs?: number } = {}) {
    this.session = startSession({
      ...timeouts,
      origin: "http://test",
      socketUrl: "ws://test/ws",
      trainer: this.trainer,
      backend: "cpu",
      openLink: async (id: Identity): Promise<PeerLink> => {
        const reducer = createAllReducer({ transport: network.transport(id.peerId) });
        return {
          reduce: async (args) => {
            if (args.plan.kind !== "ring") throw new Error("ring only");
            const { mean, stats } = await reducer.allReduce({ attempt: args.attempt, ring: args.plan.members, gradient: args.gradient, samples: args.samples, frameBytes: args.frameBytes });
            return { mean, bytesSent: stats.bytesSent, bytesReceived: stats.bytesReceived };
          },
          abortRound: (attempt, reason) => reducer.abortRound(attempt, reason),
          // The fake trainer's stage does not talk to neighbours (the bridge has its own tests).
          openStage: () => new MessageChannel().port2,
          closeStage: () => undefined,
          close: () => {
            this.closedLinks++;
            reducer.close();
            network.kill(id.peerId, "link closed");
            if (this.linkCloseThrows) throw new Error("the link went with the device");
          },
        };
      },
      onStatus: (status) => (this.status = status),
      connect: (events) => {
        this.events = events;
        return { send: (text) => (this.sent.push(parseWorkerMessage(text)), true), close: (reason) => void (this.closedWith = reason) };
      },
      http: {
        fetchState: async (round) => {
          if (this.stateUnreachable) throw new Error("fetching the state: 503");
          const bytes = new ArrayBuffer(4);
          new DataView(bytes).setUint32(0, round, true);
          return bytes;
        },
        uploadState: async () => undefined,
        uploadContribution: async (round) => {
          this.audited.push(round);
          await this.answerAudits();
        },
      },
    });
  }

  tell(message: CoordinatorMessage): void {
    this.events.onMessage(JSON.stringify(message));
  }

  async next<T extends WorkerMessage["type"]>(type: T, after = 0): Promise<Extract<WorkerMessage, { type: T }>> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const found = this.sent.slice(after).find((m) => m.type === type);
      if (found !== undefined) return found as Extract<WorkerMessage, { type: T }>;
      if (Date.now() > deadline) throw new Error(`no ${type} within ${WAIT_MS} ms; sent ${this.sent.map((m) => m.type).join(",")}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Hello, welcome as `peerId`, synced to round 0. */
  async join(peerId: string): Promise<void> {
    this.events.onOpen();
    await this.next("hello");
    this.tell({ type: "welcome", protocol: PROTOCOL_VERSION, identity: identity(peerId), job: JOB, round: 0 });
    await this.next("ready");
  }
}

const round = (attempt: number, lease: number[], members: string[], index = 1): CoordinatorMessage => ({
  type: "round",
  attempt,
  round: index,
  epoch: 0,
  plan: { kind: "ring", members },
  lease,
  frameBytes: 64,
  upload: false,
});

let tabs: Tab[] = [];
afterEach(() => {
  for (const tab of tabs) tab.session.stop("test over");
  tabs = [];
});

describe("the session driver", () => {
  it("two tabs average over the in-memory ring and commit the same weights", async () => {
    const network = createMemoryNetwork(1);
    tabs = [new Tab(network), new Tab(network)];
    const [a, b] = tabs as [Tab, Tab];
    await a.join("w-a");
    await b.join("w-b");
    a.tell(round(1, [0, 1], ["w-a", "w-b"]));
    b.tell(round(1, [2, 3, 4], ["w-a", "w-b"]));
    const [ra, rb] = await Promise.all([a.next("result"), b.next("result")]);
    // The sample-weighted mean is the same on both, so the update is: bit-identical hashes.
    expect(ra.hash).toBe(rb.hash);
    expect([ra.samples, rb.samples]).toEqual([2, 3]);
    for (const tab of [a, b]) tab.tell({ type: "commit", attempt: 1, round: 1, hash: ra.hash });
    await expect.poll(() => [a.status?.roundsDone, b.status?.roundsDone], { timeout: WAIT_MS }).toEqual([1, 1]);
    expect(Array.from(a.trainer.weights)).toEqual(Array.from(b.trainer.weights));
  });

  it("a tab whose socket drops mid-reduce closes its link; its neighbour reports it gone; it rejoins with a new identity", async () => {
    const network = createMemoryNetwork(2);
    tabs = [new Tab(network), new Tab(network)];
    const [a, b] = tabs as [Tab, Tab];
    await a.join("w-a");
    await b.join("w-b");
    // a is slow to compute, so b waits in the all-reduce when a's socket drops.
    const release = a.trainer.hold();
    a.tell(round(1, [0, 1], ["w-a", "w-b"]));
    b.tell(round(1, [2, 3], ["w-a", "w-b"]));
    await b.next("phase");
    a.events.onDown("connection to the server closed (1006)", 100);
    expect(a.closedLinks).toBe(1);
    release();
    const failed = await b.next("failed");
    expect(failed).toMatchObject({ attempt: 1, code: "peer-gone", suspect: "w-a" });
    // a never reports the voided attempt, and comes back as someone new.
    const mark = a.sent.length;
    a.events.onOpen();
    await a.next("hello", mark);
    a.tell({ type: "welcome", protocol: PROTOCOL_VERSION, identity: identity("w-a2"), job: JOB, round: 0 });
    await a.next("ready", mark);
    expect(a.sent.some((m) => m.type === "result" || m.type === "phase")).toBe(false);
    expect(a.status?.peerId).toBe("w-a2");
  });

  it("a trainer call that fails ends the session as restartable; a state download that fails ends it for good", async () => {
    const network = createMemoryNetwork(4);
    tabs = [new Tab(network), new Tab(network)];
    const [lost, offline] = tabs as [Tab, Tab];
    await lost.join("w-lost");
    lost.trainer.computeGradient = async () => {
      throw new Error("the GPU device was lost");
    };
    lost.tell(round(1, [0, 1], ["w-lost"]));
    expect(await lost.session.stopped).toEqual({ reason: expect.stringMatching(/compute: the GPU device was lost/), restartable: true });

    offline.stateUnreachable = true;
    offline.events.onOpen();
    await offline.next("hello");
    offline.tell({ type: "welcome", protocol: PROTOCOL_VERSION, identity: identity("w-offline"), job: JOB, round: 0 });
    expect(await offline.session.stopped).toEqual({ reason: expect.stringMatching(/welcome: fetching the state: 503/), restartable: false });
  });

  it("a session whose trainer fails keeps its connection until its spot-check answer is in, and no longer than its timeout", async () => {
    const network = createMemoryNetwork(5);
    tabs = [new Tab(network), new Tab(network, { owedUploadsTimeoutMs: 50 })];
    for (const [k, tab] of tabs.entries()) {
      await tab.join(`w-${k}`);
      let release!: () => void;
      const answered = new Promise<void>((resolve) => (release = resolve));
      // The first tab's answer arrives when released; the second tab's never does.
      tab.answerAudits = () => (k === 0 ? answered : new Promise(() => undefined));
      tab.tell(round(1, [0, 1], [`w-${k}`]));
      const result = await tab.next("result");
      tab.trainer.computeGradient = async () => {
        throw new Error("the GPU device was lost");
      };
      tab.tell({ type: "commit", attempt: 1, round: 1, hash: result.hash });
      tab.tell({ type: "audit", round: 1, attempt: 1 });
      tab.tell(round(2, [2, 3], [`w-${k}`], 2));
      await expect.poll(() => tab.status?.phase, { timeout: WAIT_MS }).toBe("stopped");
      expect(tab.audited).toEqual([1]);
      if (k === 0) {
        // Stopped, its link closed, but the server still hears it: leaving now would fail the audit.
        await new Promise((resolve) => setTimeout(resolve, 100));
        expect(tab.closedLinks).toBe(1);
        expect(tab.closedWith).toBeUndefined();
        release();
      }
      expect(await tab.session.stopped).toEqual({ reason: expect.stringMatching(/the GPU device was lost/), restartable: true });
      expect(tab.closedWith).toMatch(/the GPU device was lost/);
    }
  });

  it("a session whose trainer fails while it computes ahead stays for the reported attempt's commit, answers its audit, then stops", async () => {
    const network = createMemoryNetwork(6);
    tabs = [new Tab(network), new Tab(network, { leavingTimeoutMs: 50 })];
    for (const [k, tab] of tabs.entries()) {
      await tab.join(`w-${k}`);
      // The second tab's link throws on close: its wait and its end are still told.
      tab.linkCloseThrows = k === 1;
      const first = tab.trainer.computeGradient;
      tab.trainer.computeGradient = async (lease) => {
        if (lease[0] === 2) throw new Error("the GPU device was lost");
        return first(lease);
      };
      tab.tell({ ...round(1, [0, 1], [`w-${k}`]), next: [2, 3] } as CoordinatorMessage);
      const result = await tab.next("result");
      await expect.poll(() => tab.status?.phase, { timeout: WAIT_MS }).toBe("leaving");
      expect(tab.closedLinks).toBe(1);
      expect(tab.closedWith).toBeUndefined();
      if (k === 0) {
        tab.tell({ type: "commit", attempt: 1, round: 1, hash: result.hash });
        tab.tell({ type: "audit", round: 1, attempt: 1 });
        tab.tell(round(2, [4, 5], [`w-${k}`], 2));
        expect(tab.audited).toEqual([1]);
      }
      // The second tab hears nothing more: its wait ends at its timeout.
      expect(await tab.session.stopped).toEqual({ reason: expect.stringMatching(/the GPU device was lost/), restartable: true });
      expect(tab.closedWith).toMatch(/the GPU device was lost/);
      expect(tab.sent.filter((m) => m.type === "phase" && m.attempt === 2)).toEqual([]);
    }
  });

  it("an abort while computing skips the all-reduce; the next round runs normally", async () => {
    const network = createMemoryNetwork(3);
    tabs = [new Tab(network)];
    const [a] = tabs as [Tab];
    await a.join("w-a");
    const release = a.trainer.hold();
    a.tell(round(1, [0], ["w-a"]));
    a.tell({ type: "abort", attempt: 1, reason: "a member left" });
    release();
    await expect.poll(() => a.status?.lastError, { timeout: WAIT_MS }).toMatch(/round aborted: a member left/);
    expect(a.sent.some((m) => m.type === "phase")).toBe(false);
    a.trainer.gate = undefined;
    a.tell(round(2, [0, 1], ["w-a"]));
    expect(await a.next("result")).toMatchObject({ attempt: 2, samples: 2 });
  });
});
