import { describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, type CoordinatorMessage, type Job, type WorkerMessage } from "@crowdtrain/protocol";
import { contributionDigest } from "@crowdtrain/training";
import { SessionMachine } from "../src/session/machine.ts";
import { TRACE_LENGTH } from "../src/session/status.ts";
import type { Command, Task, TaskResult } from "../src/session/tasks.ts";

const JOB = { name: "t", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1, momentum: 0 }, batchSize: 8, rounds: 10, evalEveryRounds: 10, seed: 1, aggregation: "mean", spotCheck: 0.1 } as Job;
const IDENTITY = { peerId: "w-a", sessionToken: "s".repeat(22), peerKey: "k".repeat(22), peerToken: "t".repeat(22) };
const HASH = (n: number): string => n.toString(16).padStart(64, "0");
const REPORT = { gradient: Float32Array.from([1, -2, 3]), loss: 0.5, samples: 4, computeMs: 10, readbackMs: 2 };

/** Drives a machine and keeps what it asked for. */
class Drive {
  readonly machine = new SessionMachine({ backend: "cpu", name: "test" });
  commands: Command[] = [];
  now = 0;

  in(message: CoordinatorMessage): Command[] {
    return this.record(this.machine.handle({ type: "message", data: JSON.stringify(message), now: this.now }));
  }
  result(result: TaskResult): Command[] {
    this.now += 5;
    return this.record(this.machine.handle({ type: "result", result, now: this.now }));
  }
  record(commands: Command[]): Command[] {
    this.commands.push(...commands);
    return commands;
  }
  sent(type: WorkerMessage["type"]): WorkerMessage[] {
    return this.commands.flatMap((c) => (c.type === "send" && c.message.type === type ? [c.message] : []));
  }
  /** The tasks started by `commands`. */
  static tasks(commands: Command[]): Task[] {
    return commands.flatMap((c) => (c.type === "run" ? [c.task] : []));
  }

  /** Connected, welcomed and synced to round 0. */
  static ready(job: Job = JOB): Drive {
    const d = new Drive();
    d.record(d.machine.handle({ type: "open", now: 0 }));
    d.in({ type: "welcome", protocol: PROTOCOL_VERSION, identity: IDENTITY, job, round: 0 });
    d.result({ kind: "synced", round: 0, hash: HASH(0) });
    return d;
  }

  /** A round message for `attempt`. */
  static round(attempt: number, upload = false): CoordinatorMessage {
    return { type: "round", attempt, round: 1, epoch: 0, plan: { kind: "ring", members: ["w-a", "w-b"] }, lease: [0, 1, 2, 3], frameBytes: 1024, upload };
  }

  /** Runs attempt `attempt` up to its report (the update pending). */
  reported(attempt: number, upload = false): void {
    this.in(Drive.round(attempt, upload));
    this.result({ kind: "computed", attempt, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
    this.result({ kind: "reduced", attempt, mean: Float32Array.from([0.5, 0.5, 0.5]), bytesSent: 12, bytesReceived: 12, clipped: undefined });
    this.result({ kind: "updated", attempt, hash: HASH(1), updateMs: 1 });
  }
}

describe("SessionMachine", () => {
  it("tells the coordinator the memory its volunteer lends, and nothing when it was not said", () => {
    const lends = new SessionMachine({ backend: "cpu", memoryMiB: 2048 });
    const hello = (machine: SessionMachine): unknown => machine.handle({ type: "open", now: 0 }).find((c) => c.type === "send" && c.message.type === "hello");
    expect(hello(lends)).toMatchObject({ message: { type: "hello", memoryMiB: 2048 } });
    expect(hello(new SessionMachine({ backend: "cpu" }))).not.toHaveProperty("message.memoryMiB");
  });

  it("says hello, syncs on welcome, and runs a round to its commit one task at a time", () => {
    const d = Drive.ready();
    expect(d.sent("hello")[0]).toMatchObject({ protocol: PROTOCOL_VERSION, backend: "cpu", name: "test" });
    expect(d.sent("ready")).toEqual([{ type: "ready", round: 0, hash: HASH(0) }]);

    expect(d.machine.status.task).toBeUndefined();
    d.now = 40;
    expect(Drive.tasks(d.in(Drive.round(7, true)))).toEqual([{ kind: "compute", attempt: 7, lease: [0, 1, 2, 3] }]);
    expect(d.machine.status.phase).toBe("training");
    // The status names the task in flight and since when (a stuck tab says what it is stuck on).
    expect(d.machine.status.task).toEqual({ kind: "compute", since: 40 });
    // Computed: it commits to the digest of what it is about to send, then reduces.
    const afterCompute = d.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
    expect(d.sent("phase")).toEqual([{ type: "phase", attempt: 7, phase: "reducing", digest: contributionDigest(REPORT.gradient) }]);
    expect(Drive.tasks(afterCompute)[0]).toMatchObject({ kind: "reduce", attempt: 7, samples: 4 });
    expect(Drive.tasks(d.result({ kind: "reduced", attempt: 7, mean: new Float32Array(3), bytesSent: 12, bytesReceived: 12, clipped: ["w-b"] }))[0]).toMatchObject({ kind: "update", attempt: 7 });
    // Updated: the report, then (as uploader) the pending state is exported from the trainer...
    const afterUpdate = d.result({ kind: "updated", attempt: 7, hash: HASH(1), updateMs: 1 });
    expect(d.sent("result")[0]).toMatchObject({ attempt: 7, hash: HASH(1), samples: 4, loss: 0.5, clipped: ["w-b"], timings: { computeMs: 10, readbackMs: 2, updateMs: 1 } });
    expect(Drive.tasks(afterUpdate)).toEqual([{ kind: "export-state", round: 1, attempt: 7 }]);
    expect(Drive.tasks(d.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) }))).toEqual([]);
    // ...and uploaded beside the next tasks: the commit runs at once, not after the network.
    const bytes = new ArrayBuffer(8);
    const afterExport = d.result({ kind: "exported", round: 1, bytes });
    expect(afterExport).toContainEqual({ type: "upload-state", round: 1, bytes, auth: { peerId: "w-a", sessionToken: IDENTITY.sessionToken } });
    expect(Drive.tasks(afterExport)).toEqual([{ kind: "commit", attempt: 7, round: 1, hash: HASH(1) }]);
    d.result({ kind: "committed", attempt: 7, round: 1, hash: HASH(1), uploadMs: 0 });
    expect(d.machine.status).toMatchObject({ phase: "waiting", round: 1, roundsDone: 1, committed: [[1, HASH(1)]], samplesDone: 4, samplesCommitted: 4 });
    expect(d.machine.task).toBeUndefined();
  });

  it("an abort during compute cuts the all-reduce at once, skips it, and discards", () => {
    const d = Drive.ready();
    d.in(Drive.round(3));
    const onAbort = d.in({ type: "abort", attempt: 3, reason: "a peer left" });
    expect(onAbort).toContainEqual({ type: "abort-reduce", attempt: 3, reason: "coordinator aborted attempt 3: a peer left" });
    const afterCompute = d.result({ kind: "computed", attempt: 3, report: REPORT });
    expect(d.sent("phase")).toEqual([]);
    expect(Drive.tasks(afterCompute)).toEqual([{ kind: "discard", attempt: 3 }]);
    expect(d.machine.status.lastError).toMatch(/round aborted: a peer left/);
    // A late round message for the aborted attempt is not run either.
    d.result({ kind: "done" });
    expect(Drive.tasks(d.in(Drive.round(3)))).toEqual([]);
  });

  it("a commit for an attempt it never ran (or no longer holds) changes nothing", () => {
    const d = Drive.ready();
    expect(Drive.tasks(d.in({ type: "commit", attempt: 99, round: 1, hash: HASH(1) }))).toEqual([]);
    d.reported(4);
    expect(Drive.tasks(d.in({ type: "commit", attempt: 5, round: 1, hash: HASH(1) }))).toEqual([]);
    expect(Drive.tasks(d.in({ type: "commit", attempt: 4, round: 1, hash: HASH(1) }))).toEqual([{ kind: "commit", attempt: 4, round: 1, hash: HASH(1) }]);
  });

  it("a sync while an update is pending drops it: a later commit of that attempt is ignored", () => {
    const d = Drive.ready();
    d.reported(4);
    expect(Drive.tasks(d.in({ type: "sync", round: 3 }))).toEqual([{ kind: "sync", round: 3 }]);
    expect(d.machine.status.phase).toBe("syncing");
    d.result({ kind: "synced", round: 3, hash: HASH(3) });
    expect(d.sent("ready").at(-1)).toEqual({ type: "ready", round: 3, hash: HASH(3) });
    expect(Drive.tasks(d.in({ type: "commit", attempt: 4, round: 1, hash: HASH(1) }))).toEqual([]);
    // Computed and averaged, but never part of the model: not counted as contributed.
    expect(d.machine.status.samplesDone).toBeGreaterThan(0);
    expect(d.machine.status).toMatchObject({ roundsDone: 0, samplesCommitted: 0 });
  });

  it("a rollback reaching the uploader mid-export (abort, then sync) discards, syncs and says ready; its trace tells the story, bounded", () => {
    const d = Drive.ready();
    d.now = 100;
    d.reported(4, true); // the uploader: export-state of attempt 4 is in flight
    expect(d.machine.status.task?.kind).toBe("export-state");
    expect(Drive.tasks(d.in({ type: "abort", attempt: 4, reason: "rolling back" }))).toEqual([]);
    expect(Drive.tasks(d.in({ type: "sync", round: 6 }))).toEqual([]);
    // The export ends; its upload is refused (the round is gone), which is shown and not fatal.
    d.result({ kind: "exported", round: 1, bytes: new ArrayBuffer(8) });
    d.record(d.machine.handle({ type: "upload-failed", error: "uploading the state of round 1 failed: 409", now: d.now }));
    expect(d.machine.status.task?.kind).toBe("discard");
    expect(Drive.tasks(d.result({ kind: "done" }))).toEqual([{ kind: "sync", round: 6 }]);
    d.result({ kind: "synced", round: 6, hash: HASH(6) });
    expect(d.sent("ready").at(-1)).toEqual({ type: "ready", round: 6, hash: HASH(6) });
    expect(d.machine.status).toMatchObject({ phase: "waiting", round: 6, task: undefined });
    const story = d.machine.status.trace.map((entry) => entry.replace(/^\d+ /, ""));
    expect(story.slice(-9)).toEqual([
      "run export-state a4",
      "heard abort a4",
      "heard sync r6",
      "ended export-state: exported",
      "run discard a4",
      "upload failed: uploading the state of round 1 failed: 409",
      "ended discard: done",
      "run sync",
      "ended sync: synced",
    ]);
    // Each entry starts with the input's clock; the trace keeps the latest TRACE_LENGTH only.
    expect(d.machine.status.trace.at(-1)).toMatch(new RegExp(`^${d.now} `));
    for (let k = 0; k < TRACE_LENGTH; k++) d.in({ type: "upload", round: 99 });
    expect(d.machine.status.trace).toHaveLength(TRACE_LENGTH);
    expect(d.machine.status.trace.every((entry) => entry.endsWith("heard upload r99"))).toBe(true);
  });

  it("runs a round that names its unchanged plan by number; stops on a plan number it never received; forgets plans on a reconnect", () => {
    const d = Drive.ready();
    const plan = { kind: "ring" as const, members: ["w-a", "w-b"] };
    const { plan: _full, ...byNumber } = Drive.round(5) as Extract<CoordinatorMessage, { type: "round" }>;
    d.reported(4); // plan in full, without a number
    d.in({ ...(Drive.round(6) as object), planId: 2 } as CoordinatorMessage);
    d.result({ kind: "computed", attempt: 6, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
    expect(d.commands.flatMap((c) => (c.type === "run" && c.task.kind === "reduce" ? [c.task.plan] : [])).at(-1)).toEqual(plan);
    d.result({ kind: "reduce-failed", attempt: 6, code: "aborted", suspect: undefined, message: "test" });
    // Named by number: the plan kept under it (and the same lease on the same weights: computed already).
    expect(Drive.tasks(d.in({ ...byNumber, attempt: 7, planId: 2 } as CoordinatorMessage))).toEqual([expect.objectContaining({ kind: "reduce", attempt: 7, plan })]);
    d.result({ kind: "reduce-failed", attempt: 7, code: "aborted", suspect: undefined, message: "test" });
    // A reconnect: the new connection's numbers start over, so plan 2 is unknown on it.
    d.record(d.machine.handle({ type: "down", reason: "test", retryInMs: 10, now: d.now }));
    d.record(d.machine.handle({ type: "open", now: d.now }));
    d.in({ type: "welcome", protocol: PROTOCOL_VERSION, identity: IDENTITY, job: JOB, round: 0 });
    d.result({ kind: "synced", round: 0, hash: HASH(0) });
    const out = d.in({ ...byNumber, attempt: 8, planId: 2 } as CoordinatorMessage);
    expect(out.at(-1)).toMatchObject({ type: "stop" });
    expect(d.machine.status.stopReason).toMatch(/names plan 2, which this connection never received/);
  });

  it("a dropped connection voids what was in flight and skips the old connection's queued rounds", () => {
    const d = Drive.ready();
    d.reported(4);
    d.in(Drive.round(5));
    // Reducing attempt 5 when the socket drops; attempt 4 is still pending; a round 6 is queued.
    d.result({ kind: "computed", attempt: 5, report: REPORT });
    d.in(Drive.round(6));
    const down = d.record(d.machine.handle({ type: "down", reason: "connection to the server closed (1006)", retryInMs: 500, now: 50 }));
    expect(down).toEqual(expect.arrayContaining([
      { type: "abort-reduce", attempt: 5, reason: "connection to the server closed (1006)" },
      { type: "abort-reduce", attempt: 4, reason: "connection to the server closed (1006)" },
      { type: "close-link" },
    ]));
    expect(d.machine.status).toMatchObject({ phase: "connecting", lastError: "connection to the server closed (1006); reconnecting in 0.5 s" });
    // The reduce ends (cut short); the owed discard of attempt 4 runs; round 6 is skipped.
    const after = d.result({ kind: "reduce-failed", attempt: 5, code: "aborted", suspect: undefined, message: "cut" });
    expect(Drive.tasks(after)).toEqual([{ kind: "discard", attempt: 4 }]);
    expect(Drive.tasks(d.result({ kind: "done" }))).toEqual([]);
    // A relayed abort with no suspect is not reported as a failure of ours.
    expect(d.sent("failed")).toEqual([]);
    // The reconnect: hello again, a new identity.
    d.record(d.machine.handle({ type: "open", now: 60 }));
    expect(d.sent("hello")).toHaveLength(2);
  });

  it("runs a round whose attempt id an older connection saw aborted (a restarted server counts on from its checkpoint)", () => {
    const d = Drive.ready();
    d.in(Drive.round(43));
    d.record(d.machine.handle({ type: "down", reason: "connection to the server closed (1006)", retryInMs: 500, now: 50 }));
    d.result({ kind: "done" });
    d.record(d.machine.handle({ type: "open", now: 60 }));
    d.in({ type: "welcome", protocol: PROTOCOL_VERSION, identity: { ...IDENTITY, peerId: "w-b" }, job: JOB, round: 0 });
    d.result({ kind: "synced", round: 0, hash: HASH(0) });
    expect(Drive.tasks(d.in(Drive.round(43)))).toEqual([{ kind: "compute", attempt: 43, lease: [0, 1, 2, 3] }]);
    expect(Drive.tasks(d.result({ kind: "computed", attempt: 43, report: { ...REPORT, gradient: REPORT.gradient.slice() } }))[0]).toMatchObject({ kind: "reduce", attempt: 43 });
  });

  it("reports a first-hand all-reduce failure with its suspect", () => {
    const d = Drive.ready();
    d.in(Drive.round(2));
    d.result({ kind: "computed", attempt: 2, report: REPORT });
    d.result({ kind: "reduce-failed", attempt: 2, code: "timeout", suspect: "w-b", message: "w-b sent nothing" });
    expect(d.sent("failed")).toEqual([{ type: "failed", attempt: 2, code: "timeout", suspect: "w-b", message: "w-b sent nothing" }]);
    expect(d.machine.status.phase).toBe("waiting");
  });

  it("answers a spot check with the very contribution it committed to", () => {
    const d = Drive.ready();
    d.reported(8);
    d.in({ type: "commit", attempt: 8, round: 1, hash: HASH(1) });
    d.result({ kind: "committed", attempt: 8, round: 1, hash: HASH(1), uploadMs: 0 });
    const upload = d.in({ type: "audit", round: 1, attempt: 8 }).find((c) => c.type === "upload-contribution");
    expect(upload).toMatchObject({ type: "upload-contribution", round: 1 });
    expect(contributionDigest((upload as Extract<Command, { type: "upload-contribution" }>).gradient)).toBe((d.sent("phase")[0] as { digest: string }).digest);
    // A failed upload is shown, not fatal; an audit of an attempt it no longer keeps too.
    d.record(d.machine.handle({ type: "upload-failed", error: "spot check of round 1: PUT /api/contribution/1: 503", now: 1 }));
    expect(d.machine.status).toMatchObject({ phase: "waiting", lastError: "spot check of round 1: PUT /api/contribution/1: 503" });
    d.in({ type: "audit", round: 1, attempt: 1 });
    expect(d.machine.status.lastError).toMatch(/no contribution of attempt 1 kept/);
  });

  it("answers a spot check at once, not behind the tasks queued before it, and still after it stopped computing", () => {
    const d = Drive.ready();
    d.reported(8);
    // The commit's task is in flight and the next round waits behind it when the audit comes.
    d.in({ type: "commit", attempt: 8, round: 1, hash: HASH(1) });
    d.in(Drive.round(9));
    const upload = d.in({ type: "audit", round: 1, attempt: 8 });
    expect(upload).toMatchObject([{ type: "upload-contribution", round: 1 }]);
    expect(d.machine.status.task?.kind).toBe("commit");
    // The next round's compute then fails: the session stops, the answer already on its way.
    d.result({ kind: "committed", attempt: 8, round: 1, hash: HASH(1), uploadMs: 0 });
    const stop = d.result({ kind: "failed", task: "compute", error: "the GPU device was lost", trainer: true });
    expect(stop).toContainEqual(expect.objectContaining({ type: "stop", restartable: true }));
    expect(d.commands.filter((c) => c.type === "upload-contribution")).toHaveLength(1);
  });

  describe("whose trainer fails after it reported an attempt", () => {
    const FAILED = { kind: "failed", task: "compute", error: "the GPU device was lost", trainer: true } as const;
    const REASON = "error: compute: the GPU device was lost";
    const stopOf = (commands: Command[]): Command | undefined => commands.find((c) => c.type === "stop");
    /** Reported attempt 7, computing the next lease ahead (which is what then fails). */
    const computingAhead = (): Drive => {
      const d = Drive.ready();
      d.in({ ...Drive.round(7), next: [4, 5, 6, 7] } as CoordinatorMessage);
      d.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
      d.result({ kind: "reduced", attempt: 7, mean: new Float32Array(3), bytesSent: 12, bytesReceived: 12, clipped: undefined });
      d.result({ kind: "updated", attempt: 7, hash: HASH(1), updateMs: 1 });
      expect(d.machine.status.task?.kind).toBe("compute");
      return d;
    };
    const failedAhead = (): Drive => {
      const d = computingAhead();
      expect(d.result(FAILED)).toEqual([{ type: "leaving", attempt: 7 }, { type: "close-link" }]);
      expect(d.machine.status.phase).toBe("leaving");
      return d;
    };

    it("stays for the commit, answers the audit sent with it, and stops at the next message", () => {
      const d = failedAhead();
      expect(d.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) })).toEqual([]);
      expect(d.in({ type: "audit", round: 1, attempt: 7 })).toMatchObject([{ type: "upload-contribution", round: 1 }]);
      expect(stopOf(d.in({ ...Drive.round(8), round: 2 } as CoordinatorMessage))).toEqual({ type: "stop", reason: REASON, restartable: true });
      expect(d.machine.stopped).toBe(true);
      expect(Drive.tasks(d.commands).filter((t) => t.kind === "compute" && t.attempt === 8)).toEqual([]);
    });

    it("stops at once when the attempt's outcome already came: a commit with more behind it, or an abort", () => {
      const committed = computingAhead();
      committed.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) });
      expect(committed.in({ type: "audit", round: 1, attempt: 7 })).toMatchObject([{ type: "upload-contribution" }]);
      committed.in({ ...Drive.round(8), round: 2 } as CoordinatorMessage);
      expect(stopOf(committed.result(FAILED))).toEqual({ type: "stop", reason: REASON, restartable: true });

      const aborted = computingAhead();
      aborted.in({ type: "abort", attempt: 7, reason: "a member left" });
      expect(stopOf(aborted.result(FAILED))).toMatchObject({ type: "stop", restartable: true });

      // The commit alone came: its audit may still be on its way.
      const commitOnly = computingAhead();
      commitOnly.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) });
      expect(stopOf(commitOnly.result(FAILED))).toBeUndefined();
      expect(commitOnly.in({ type: "audit", round: 1, attempt: 7 })).toMatchObject([{ type: "upload-contribution" }]);
      expect(stopOf(commitOnly.in({ type: "sync", round: 1 }))).toMatchObject({ type: "stop", restartable: true });
    });

    it("stays too when the commit's own task fails before the audit came", () => {
      const d = Drive.ready();
      d.reported(8);
      d.in({ type: "commit", attempt: 8, round: 1, hash: HASH(1) });
      expect(d.result({ kind: "failed", task: "commit", error: "the GPU device was lost", trainer: true })).toContainEqual({ type: "leaving", attempt: 8 });
      expect(d.in({ type: "audit", round: 1, attempt: 8 })).toMatchObject([{ type: "upload-contribution", round: 1 }]);
      expect(stopOf(d.in({ ...Drive.round(9), round: 2 } as CoordinatorMessage))).toMatchObject({ type: "stop", restartable: true });
    });

    it("ends the stay on the driver's timeout or a lost connection (restartable), on a stop by the server or the volunteer (for good)", () => {
      const late = failedAhead();
      expect(stopOf(late.record(late.machine.handle({ type: "leave-now", now: 99 })))).toMatchObject({ type: "stop", restartable: true });
      const cut = failedAhead();
      expect(stopOf(cut.record(cut.machine.handle({ type: "down", reason: "socket closed", retryInMs: 100, now: 99 })))).toMatchObject({ type: "stop", restartable: true });
      expect(stopOf(failedAhead().in({ type: "stop", reason: "the job is done" }))).toEqual({ type: "stop", reason: "the job is done" });
      const closed = failedAhead();
      expect(stopOf(closed.record(closed.machine.handle({ type: "stop", reason: "the volunteer closed the tab", now: 99 })))).toEqual({ type: "stop", reason: "the volunteer closed the tab" });
      // A failure with nothing reported stops at once, as before.
      const idle = Drive.ready();
      idle.in(Drive.round(9));
      expect(stopOf(idle.result(FAILED))).toMatchObject({ type: "stop", restartable: true });
    });
  });

  it("with topk, adds the committed residual to the next contribution: kept through an abort, replaced on commit, dropped on sync", () => {
    const d = Drive.ready({ ...JOB, codec: "topk", topkFraction: 0.34 } as Job);
    const reduceOf = (attempt: number, residual?: number[]): Extract<Task, { kind: "reduce" }> => {
      d.in(Drive.round(attempt));
      const task = Drive.tasks(d.result({ kind: "computed", attempt, report: { ...REPORT, gradient: REPORT.gradient.slice() } }))[0] as Extract<Task, { kind: "reduce" }>;
      d.result({ kind: "reduced", attempt, mean: new Float32Array(3), bytesSent: 8, bytesReceived: 8, clipped: undefined, ...(residual === undefined ? {} : { residual: Float32Array.from(residual) }) });
      return task;
    };
    // First round: nothing left over yet. Its residual is held, then the round is aborted.
    expect(Array.from(reduceOf(1, [1, 0, 0]).gradient)).toEqual([1, -2, 3]);
    d.result({ kind: "updated", attempt: 1, hash: HASH(1), updateMs: 1 });
    d.in({ type: "abort", attempt: 1, reason: "a peer left" });
    d.result({ kind: "done" });
    // The retry starts from the same (empty) residual; its own residual is committed this time.
    expect(Array.from(reduceOf(2, [0.5, 0, -1]).gradient)).toEqual([1, -2, 3]);
    d.result({ kind: "updated", attempt: 2, hash: HASH(1), updateMs: 1 });
    d.in({ type: "commit", attempt: 2, round: 1, hash: HASH(1) });
    d.result({ kind: "committed", attempt: 2, round: 1, hash: HASH(1), uploadMs: 0 });
    // The digest covers the gradient as computed, not the residual riding along.
    expect(d.sent("phase").at(-1)).toMatchObject({ digest: contributionDigest(REPORT.gradient) });
    expect(Array.from(reduceOf(3).gradient)).toEqual([1.5, -2, 2]);
    d.result({ kind: "updated", attempt: 3, hash: HASH(2), updateMs: 1 });
    // A sync (rollback, or fell behind) drops the residual with the weights it was left over from.
    d.in({ type: "abort", attempt: 3, reason: "rollback" });
    d.result({ kind: "done" });
    d.in({ type: "sync", round: 1 });
    d.result({ kind: "synced", round: 1, hash: HASH(1) });
    expect(Array.from(reduceOf(4).gradient)).toEqual([1, -2, 3]);
    // Without a lossy codec the gradient goes out as computed, whatever a reducer returns.
    const dense = Drive.ready();
    dense.in(Drive.round(1));
    const task = Drive.tasks(dense.result({ kind: "computed", attempt: 1, report: { ...REPORT, gradient: REPORT.gradient.slice() } }))[0] as Extract<Task, { kind: "reduce" }>;
    expect(Array.from(task.gradient)).toEqual([1, -2, 3]);
  });

  it("computes the next lease ahead on its pending weights while the commit is awaited, and uses it when the round brings that lease", () => {
    const d = Drive.ready();
    const next = [4, 5, 6, 7];
    d.in({ ...Drive.round(7), next } as CoordinatorMessage);
    d.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
    d.result({ kind: "reduced", attempt: 7, mean: new Float32Array(3), bytesSent: 12, bytesReceived: 12, clipped: undefined });
    // Reported: the lease ahead starts at once, on the pending weights, ahead of the commit.
    const afterUpdate = d.result({ kind: "updated", attempt: 7, hash: HASH(1), updateMs: 1 });
    expect(Drive.tasks(afterUpdate)).toEqual([{ kind: "compute", attempt: 7, lease: next, ahead: true }]);
    expect(Drive.tasks(d.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) }))).toEqual([]);
    const aheadGradient = Float32Array.from([9, 9, 9]);
    expect(Drive.tasks(d.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: aheadGradient }, ahead: true }))).toEqual([{ kind: "commit", attempt: 7, round: 1, hash: HASH(1) }]);
    d.result({ kind: "committed", attempt: 7, round: 1, hash: HASH(1), uploadMs: 0 });
    // The next round brings that lease: no computation, straight to the all-reduce with it.
    const tasks = Drive.tasks(d.in({ ...Drive.round(8), round: 2, lease: next } as CoordinatorMessage));
    expect(tasks).toEqual([expect.objectContaining({ kind: "reduce", attempt: 8, gradient: aheadGradient, samples: 4 })]);
    expect(d.sent("phase").at(-1)).toEqual({ type: "phase", attempt: 8, phase: "reducing", digest: contributionDigest(aheadGradient) });
  });

  it("drops a lease computed ahead when its base is aborted or the next round brings another lease", () => {
    const d = Drive.ready();
    d.in({ ...Drive.round(7), next: [4, 5, 6, 7] } as CoordinatorMessage);
    d.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
    d.result({ kind: "reduced", attempt: 7, mean: new Float32Array(3), bytesSent: 12, bytesReceived: 12, clipped: undefined });
    d.result({ kind: "updated", attempt: 7, hash: HASH(1), updateMs: 1 });
    // Aborted while computing ahead: that work started from weights that will never be committed.
    d.in({ type: "abort", attempt: 7, reason: "a peer left" });
    expect(Drive.tasks(d.result({ kind: "computed", attempt: 7, report: REPORT, ahead: true }))).toEqual([{ kind: "discard", attempt: 7 }]);
    d.result({ kind: "done" });
    expect(Drive.tasks(d.in({ ...Drive.round(8), lease: [4, 5, 6, 7] } as CoordinatorMessage))).toEqual([{ kind: "compute", attempt: 8, lease: [4, 5, 6, 7] }]);
    // Committed, but the next round split the batch differently: computed again.
    const e = Drive.ready();
    e.in({ ...Drive.round(7), next: [4, 5] } as CoordinatorMessage);
    e.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
    e.result({ kind: "reduced", attempt: 7, mean: new Float32Array(3), bytesSent: 12, bytesReceived: 12, clipped: undefined });
    e.result({ kind: "updated", attempt: 7, hash: HASH(1), updateMs: 1 });
    e.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) });
    e.result({ kind: "computed", attempt: 7, report: REPORT, ahead: true });
    e.result({ kind: "committed", attempt: 7, round: 1, hash: HASH(1), uploadMs: 0 });
    expect(Drive.tasks(e.in({ ...Drive.round(8), round: 2, lease: [4, 5, 6] } as CoordinatorMessage))).toEqual([{ kind: "compute", attempt: 8, lease: [4, 5, 6] }]);
  });

  it("keeps its last computation across an abort: the retry with the same lease goes straight to the all-reduce; another lease, a commit or a sync computes again", () => {
    const lease = (Drive.round(7) as Extract<CoordinatorMessage, { type: "round" }>).lease;
    const d = Drive.ready();
    d.in(Drive.round(7));
    const gradient = Float32Array.from([5, 6, 7]);
    d.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient } });
    d.in({ type: "abort", attempt: 7, reason: "a peer left" });
    d.result({ kind: "reduce-failed", attempt: 7, code: "aborted", suspect: undefined, message: "aborted" });
    d.result({ kind: "done" });
    // The coordinator kept this member's lease for the next attempt (packages/coordination retained.ts).
    expect(Drive.tasks(d.in(Drive.round(8)))).toEqual([expect.objectContaining({ kind: "reduce", attempt: 8, gradient })]);
    expect(d.sent("phase").at(-1)).toEqual({ type: "phase", attempt: 8, phase: "reducing", digest: contributionDigest(gradient) });
    // Aborted again and retried with another lease: computed afresh.
    d.in({ type: "abort", attempt: 8, reason: "a peer left" });
    d.result({ kind: "reduce-failed", attempt: 8, code: "aborted", suspect: undefined, message: "aborted" });
    d.result({ kind: "done" });
    expect(Drive.tasks(d.in({ ...Drive.round(9), lease: [...lease, 99] } as CoordinatorMessage))).toEqual([{ kind: "compute", attempt: 9, lease: [...lease, 99] }]);

    // A lease computed ahead, then aborted: the retry uses it too.
    const ahead = Drive.ready();
    const next = [4, 5, 6, 7];
    ahead.in({ ...Drive.round(7), next } as CoordinatorMessage);
    ahead.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: REPORT.gradient.slice() } });
    ahead.result({ kind: "reduced", attempt: 7, mean: new Float32Array(3), bytesSent: 12, bytesReceived: 12, clipped: undefined });
    ahead.result({ kind: "updated", attempt: 7, hash: HASH(1), updateMs: 1 });
    ahead.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) });
    const aheadGradient = Float32Array.from([9, 9, 9]);
    ahead.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: aheadGradient }, ahead: true });
    ahead.result({ kind: "committed", attempt: 7, round: 1, hash: HASH(1), uploadMs: 0 });
    ahead.in({ ...Drive.round(8), round: 2, lease: next } as CoordinatorMessage);
    ahead.in({ type: "abort", attempt: 8, reason: "a peer left" });
    ahead.result({ kind: "reduce-failed", attempt: 8, code: "aborted", suspect: undefined, message: "aborted" });
    ahead.result({ kind: "done" });
    expect(Drive.tasks(ahead.in({ ...Drive.round(9), round: 2, lease: next } as CoordinatorMessage))).toEqual([expect.objectContaining({ kind: "reduce", attempt: 9, gradient: aheadGradient })]);

    // Its own gradient refused by the all-reducer (not finite): the retry computes it afresh.
    const refused = Drive.ready();
    refused.in(Drive.round(7));
    refused.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient } });
    refused.result({ kind: "reduce-failed", attempt: 7, code: "bad-input", suspect: "w-a", message: "own gradient has non-finite value NaN" });
    refused.in({ type: "abort", attempt: 7, reason: "bad input" });
    refused.result({ kind: "done" });
    expect(Drive.tasks(refused.in(Drive.round(8)))).toEqual([{ kind: "compute", attempt: 8, lease }]);

    // Aborted while it computed: the computation still lands, and the retry uses it.
    const e = Drive.ready();
    e.in(Drive.round(7));
    e.in({ type: "abort", attempt: 7, reason: "a peer left" });
    e.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient } });
    e.result({ kind: "done" });
    expect(Drive.tasks(e.in(Drive.round(8)))).toEqual([expect.objectContaining({ kind: "reduce", attempt: 8, gradient })]);

    // After a commit the same lease is new work on new weights.
    const f = Drive.ready();
    f.reported(7);
    f.in({ type: "commit", attempt: 7, round: 1, hash: HASH(1) });
    f.result({ kind: "committed", attempt: 7, round: 1, hash: HASH(1), uploadMs: 0 });
    expect(Drive.tasks(f.in({ ...Drive.round(8), round: 2 } as CoordinatorMessage))).toEqual([{ kind: "compute", attempt: 8, lease }]);

    // A sync replaces the weights it was computed on.
    const g = Drive.ready();
    g.in(Drive.round(7));
    g.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient } });
    g.in({ type: "abort", attempt: 7, reason: "rollback" });
    g.result({ kind: "reduce-failed", attempt: 7, code: "aborted", suspect: undefined, message: "aborted" });
    g.result({ kind: "done" });
    g.in({ type: "sync", round: 0 });
    g.result({ kind: "synced", round: 0, hash: HASH(0) });
    expect(Drive.tasks(g.in(Drive.round(8)))).toEqual([{ kind: "compute", attempt: 8, lease }]);
  });

  it("stops on a committed hash that differs from its own, on a bad message, and on a failed trainer task; only the trainer's failures may start over", () => {
    const mismatch = Drive.ready();
    mismatch.reported(4);
    mismatch.in({ type: "commit", attempt: 4, round: 1, hash: HASH(9) });
    const stop = mismatch.result({ kind: "committed", attempt: 4, round: 1, hash: HASH(1), uploadMs: 0 });
    expect(stop).toContainEqual({ type: "stop", reason: expect.stringMatching(/committed hash 0+9 differs from ours 0+1/), restartable: true });

    const bad = Drive.ready();
    const refused = bad.machine.handle({ type: "message", data: '{"type":"round"}', now: 1 });
    bad.record(refused);
    expect(bad.machine.status.phase).toBe("stopped");
    expect(bad.machine.status.stopReason).toMatch(/bad coordinator message/);
    expect(refused.find((c) => c.type === "stop")).not.toHaveProperty("restartable");

    const told = Drive.ready();
    expect(told.in({ type: "stop", reason: "the job is done" }).find((c) => c.type === "stop")).toEqual({ type: "stop", reason: "the job is done" });

    const broken = Drive.ready();
    broken.in(Drive.round(2));
    const failed = broken.result({ kind: "failed", task: "compute", error: "WebGPU device lost", trainer: true });
    expect(broken.machine.status).toMatchObject({ phase: "stopped", stopReason: "error: compute: WebGPU device lost" });
    expect(failed).toContainEqual({ type: "stop", reason: "error: compute: WebGPU device lost", restartable: true });

    // A task that failed outside the trainer (the state download, the peer link): final.
    const offline = Drive.ready();
    offline.in({ type: "sync", round: 0 });
    const unreachable = offline.result({ kind: "failed", task: "sync", error: "fetching the state: 503", trainer: false });
    expect(unreachable).toContainEqual({ type: "stop", reason: "error: sync: fetching the state: 503" });
    // Stopped for good: nothing more is done.
    expect(broken.in(Drive.round(3))).toEqual([]);
  });

  describe("a pipeline round", () => {
    const PLAN = { kind: "pipeline", stages: [{ from: 0, to: 2 }, { from: 2, to: 4 }], replicas: [["w-b", "w-a"], ["w-c", "w-d"]], microBatches: 2, schedule: "gpipe" } as const;
    const pipelineRound = (attempt: number, upload = false): CoordinatorMessage => ({ ...Drive.round(attempt, upload), plan: { kind: "ring", members: ["w-a", "w-d"] }, pipeline: { ...PLAN, stages: [...PLAN.stages], replicas: PLAN.replicas.map((r) => [...r]) } }) as CoordinatorMessage;
    const LAYERS = [HASH(11), HASH(12)];

    it("computes its stage of its replica, averages on its stage's ring, reports its layer hashes, uploads its part and commits under the round's hash", () => {
      const d = Drive.ready();
      const [compute] = Drive.tasks(d.in(pipelineRound(7, true)));
      expect(compute).toEqual({ kind: "compute", attempt: 7, lease: [0, 1, 2, 3], stage: { plan: PLAN, stage: 1, replica: 0 } });
      expect(d.machine.status.stage).toEqual({ stage: 1, replica: 0, of: 2 });
      const [reduce] = Drive.tasks(d.result({ kind: "computed", attempt: 7, report: { ...REPORT, gradient: REPORT.gradient.slice() } }));
      expect(reduce).toMatchObject({ kind: "reduce", plan: { kind: "ring", members: ["w-a", "w-d"] }, samples: 4 });
      d.result({ kind: "reduced", attempt: 7, mean: Float32Array.from([0.5, 0.5, 0.5]), bytesSent: 12, bytesReceived: 12, clipped: undefined });
      const afterUpdate = d.result({ kind: "updated", attempt: 7, hash: HASH(2), updateMs: 1, layerHashes: LAYERS });
      expect(d.sent("result")[0]).toMatchObject({ type: "result", attempt: 7, hash: HASH(2), layerHashes: LAYERS });
      expect(Drive.tasks(afterUpdate)).toEqual([{ kind: "export-state", round: 1, attempt: 7 }]);
      d.result({ kind: "exported", round: 1, bytes: new ArrayBuffer(8) });
      // The round's hash combines every stage's: the stage adopts it.
      expect(Drive.tasks(d.in({ type: "commit", attempt: 7, round: 1, hash: HASH(5) }))).toEqual([{ kind: "commit", attempt: 7, round: 1, hash: HASH(5) }]);
      d.result({ kind: "committed", attempt: 7, round: 1, hash: HASH(5), uploadMs: 0 });
      expect(d.machine.status).toMatchObject({ phase: "waiting", round: 1, roundsDone: 1 });
    });

    it("tells the coordinator a stage failure with its suspect, but not its own abort", () => {
      const d = Drive.ready();
      d.in(pipelineRound(7));
      d.result({ kind: "stage-failed", attempt: 7, code: "timeout", suspect: "w-b", message: "no forward activations of micro-batch 0 from w-b within 30000 ms" });
      expect(d.sent("failed")).toEqual([{ type: "failed", attempt: 7, code: "timeout", suspect: "w-b", message: "no forward activations of micro-batch 0 from w-b within 30000 ms" }]);
      expect(d.machine.status.phase).toBe("waiting");
      d.in(pipelineRound(8));
      d.result({ kind: "stage-failed", attempt: 8, code: "aborted", suspect: undefined, message: "coordinator aborted attempt 8" });
      expect(d.sent("failed")).toHaveLength(1);
    });

    it("stops on a pipeline round that does not place it", () => {
      const d = Drive.ready();
      const elsewhere = { ...pipelineRound(7), pipeline: { ...PLAN, stages: [...PLAN.stages], replicas: [["w-b", "w-x"]] } };
      d.in(elsewhere as CoordinatorMessage);
      expect(d.machine.status).toMatchObject({ phase: "stopped", stopReason: "error: pipeline round 7 does not place this tab" });
    });
  });
});
