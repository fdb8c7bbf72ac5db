import { computeTimeMs, leaseSpeed, parseCoordinatorMessage, pipelinePosition, roundSamples, PROTOCOL_VERSION, type Backend, type Identity, type MemberRole, type RoundTimings, type ResolvedCoordinatorMessage, type RoundWithPlan, PlanBook } from "@crowdtrain/protocol";
import { ErrorFeedback } from "@crowdtrain/allreduce";
import { contributionDigest } from "@crowdtrain/training";
import { COMMITTED_HISTORY, initialStatus, TRACE_LENGTH, type SessionStatus } from "./status.ts";
import type { GradientReport } from "../trainer/api.ts";
import type { Command, Task, TaskResult } from "./tasks.ts";

/** Contributions kept for a spot check: the latest attempts' (an audit arrives right after its commit). */
const KEPT_CONTRIBUTIONS = 2;

/** What the session hears: the connection, the coordinator, the volunteer, and its own tasks ending. */
export type SessionInput =
  | { type: "open"; now: number }
  | { type: "down"; reason: string; retryInMs: number; now: number }
  /** A coordinator message, as received (parsed here: a bad one stops the session). */
  | { type: "message"; data: unknown; now: number }
  | { type: "stop"; reason: string; now: number }
  | { type: "result"; result: TaskResult; now: number }
  /** An upload running beside the tasks failed: shown, not fatal (the server asks someone else, or counts the audit unanswered). */
  | { type: "upload-failed"; error: string; now: number }
  /** Leaving took too long (the driver's timeout after a `leaving` command): stop now. */
  | { type: "leave-now"; now: number };

export type SessionConfig = {
  backend: Backend;
  name?: string | undefined;
  adapter?: string | undefined;
  joinToken?: string | undefined;
  /** "server": this tab only serves inference requests (`?role=server`). Default "trainer". */
  role?: MemberRole | undefined;
  /** Memory the volunteer lends, in MiB (`?memoryMiB=`), told to the coordinator at hello. */
  memoryMiB?: number | undefined;
};

/**
 * Work queued behind the task in flight: coordinator messages, a discard owed after a drop, and the
 * next round's lease to compute ahead while the commit of `attempt` is awaited.
 */
type Queued = { message: ResolvedCoordinatorMessage; generation: number } | { discard: number } | { ahead: { attempt: number; lease: number[] } };

type Reduced = Extract<TaskResult, { kind: "reduced" }>;

/**
 * Attempts the coordinator aborted (or that we lost with a connection), per connection: an attempt id
 * names one attempt only within one coordinator session.
 */
class AbortedAttempts {
  private readonly ids = new Set<string>();
  add(generation: number, attempt: number): void {
    this.ids.add(`${generation}:${attempt}`);
  }
  has(generation: number, attempt: number): boolean {
    return this.ids.has(`${generation}:${attempt}`);
  }
  /** Forgets the attempts of older connections. */
  keepOnly(generation: number): void {
    for (const id of this.ids) if (!id.startsWith(`${generation}:`)) this.ids.delete(id);
  }
}

/** The round being computed and reduced, from its `round` message to our report (and upload). */
type Running = {
  message: RoundWithPlan;
  startedAt: number;
  /** The connection it came on. */
  generation: number;
  grad?: { computeMs: number; readbackMs: number; samples: number; loss: number; busyMs?: number | undefined };
  reduceStartedAt?: number;
  allReduceMs?: number;
  reduced?: Reduced;
};

/**
 * One volunteer's participation as a pure state machine, like the coordinator: `handle(input)`
 * updates the state and returns commands (messages to send, tasks to run, links to cut); the driver
 * (session.ts) carries them out and feeds task results back. No I/O, no clock: time comes on inputs.
 *
 * Rules:
 * - Coordinator messages are handled in order, one task at a time (the trainer is one resource);
 *   an `abort` also cuts the named attempt's all-reduce short at once.
 * - A round: compute, commit to the contribution's digest (sent with `phase: reducing`), all-reduce,
 *   apply the update as pending, report, and (as the round's uploader) upload the pending state.
 *   The update is adopted only on `commit` for that very attempt; `abort` discards it.
 * - When the connection drops, whatever was in flight is void: its all-reduce is cut, its pending
 *   update discarded, queued rounds of the old connection skipped, the identity and link dropped.
 */
export class SessionMachine {
  readonly status: SessionStatus = initialStatus();
  private identity: Identity | undefined;
  private batchSize = 1;
  /** Bumped when the connection drops: queued rounds of an older connection are not acted on. */
  private generation = 0;
  private readonly inbox: Queued[] = [];
  private busy: Task | undefined;
  /** The connection generation the task in flight started in. */
  private busyGeneration = 0;
  private readonly aborted = new AbortedAttempts();
  private running: Running | undefined;
  /** Reported and waiting for the coordinator's commit or abort. */
  private pending: { attempt: number; round: number; samples: number; timings: RoundTimings; startedAt: number; commitHash?: string } | undefined;
  /** What we sent into recent all-reduces, by attempt: a spot check asks for it after the commit. */
  private readonly contributions = new Map<number, Float32Array>();
  /** The job's codec drops what it does not send (topk): the residual it adds back next time. */
  private usesErrorFeedback = false;
  /** That residual, pending per attempt like the trainer's update; made at the first contribution. */
  private errorFeedback: ErrorFeedback | undefined;
  /** The attempt whose update this member adopted last. */
  private lastCommitted: number | undefined;
  /** The next round's lease, computed ahead on the update pending for `base` (used if `base` commits). */
  private computedAhead: { base: number; lease: readonly number[]; report: GradientReport } | undefined;
  /**
   * The last lease this tab computed for a round (not ahead) and the committed attempt it started
   * from: when an attempt aborts, the coordinator gives its members the same leases again
   * (packages/coordination retained.ts), and a lease already computed on the same weights is not
   * computed twice.
   */
  private lastComputed: { base: number | undefined; lease: readonly number[]; report: GradientReport } | undefined;

  /** Plans this connection received, by number: a round whose plan is unchanged names it only. */
  private readonly plans = new PlanBook();

  /**
   * Set when the trainer failed after this member reported `attempt`: the commit of that attempt may
   * draw a spot check of this member, which only this identity can answer, and a member that leaves
   * with an audit unanswered fails it (every round since its last passed audit is rolled back). So
   * the session stays, its link closed and its tasks dropped, until the attempt is aborted, or
   * committed and the audits sent with the commit answered (the coordinator sends them right after
   * the commit, before anything else); then it stops, restartable. `committed`: the commit came.
   */
  private leaving: { reason: string; attempt: number; committed: boolean } | undefined;

  /** The clock of the input being handled (inputs carry it, so the machine stays pure). */
  private now = 0;

  constructor(private readonly config: SessionConfig) {
    this.status.backend = config.backend;
  }

  get stopped(): boolean {
    return this.status.phase === "stopped";
  }

  /** The task in flight, if any (for tests and diagnostics). */
  get task(): Task | undefined {
    return this.busy;
  }

  handle(input: SessionInput): Command[] {
    const out: Command[] = [];
    if (this.stopped) return out;
    this.now = input.now;
    switch (input.type) {
      case "open": {
        this.trace("socket open");
        this.publish({ phase: "connecting" });
        const { backend, name, adapter, joinToken, role, memoryMiB } = this.config;
        this.send(out, { type: "hello", protocol: PROTOCOL_VERSION, name, backend, adapter, joinToken, ...(role === undefined || role === "trainer" ? {} : { role }), ...(memoryMiB === undefined ? {} : { memoryMiB }) });
        break;
      }
      case "down":
        this.trace(`socket down: ${input.reason}`);
        this.onDown(input.reason, input.retryInMs, out);
        break;
      case "message":
        this.onMessage(input.data, out);
        break;
      case "stop":
        this.stop(input.reason, out);
        break;
      case "result":
        this.onResult(input.result, input.now, out);
        break;
      case "upload-failed":
        this.trace(`upload failed: ${input.error.slice(0, 80)}`);
        this.publish({ lastError: input.error });
        break;
      case "leave-now":
        if (this.leaving !== undefined) this.finishLeaving(out);
        break;
    }
    this.drain(input.now, out);
    return out;
  }

  private onMessage(data: unknown, out: Command[]): void {
    let message: ResolvedCoordinatorMessage;
    try {
      if (typeof data !== "string") throw new Error("binary message from the coordinator");
      // A round's plan comes in full only when it changed; the book holds the last one.
      message = this.plans.resolve(parseCoordinatorMessage(data));
    } catch (error) {
      // Leaving, the trainer's failure is still why this tab stops: a fresh one may carry on.
      this.fail(String(error), out, this.leaving !== undefined);
      return;
    }
    this.trace(`heard ${message.type}${"attempt" in message ? ` a${message.attempt}` : ""}${"round" in message ? ` r${message.round}` : ""}`);
    if (this.leaving !== undefined) return this.whileLeaving(this.leaving, message, out);
    if (message.type === "abort") {
      // Cut the running all-reduce short now; the queued handler then discards the pending update.
      this.aborted.add(this.generation, message.attempt);
      out.push({ type: "abort-reduce", attempt: message.attempt, reason: `coordinator aborted attempt ${message.attempt}: ${message.reason}` });
    }
    if (message.type === "audit") {
      // Answered at once, beside the task in flight: the upload needs only the kept contribution. In
      // the queue it waited behind the next round's compute, and a session that stopped there (its
      // trainer failed) never answered; the coordinator counts that as a failed spot check and rolls
      // every round back to this member's last audited one (seen in a CI run of train.spec).
      this.answerAudit(message, out);
      return;
    }
    this.inbox.push({ message, generation: this.generation });
  }

  private onDown(reason: string, retryInMs: number, out: Command[]): void {
    // Leaving, the connection was all it waited on: the server has revoked this identity.
    if (this.leaving !== undefined) return this.finishLeaving(out);
    const dropped = this.generation++;
    this.plans.forget();
    // Whatever was in flight is void: the coordinator aborted it when this connection dropped.
    for (const attempt of [this.running?.message.attempt, this.pending?.attempt]) {
      if (attempt === undefined) continue;
      this.aborted.add(dropped, attempt);
      out.push({ type: "abort-reduce", attempt, reason });
    }
    // The server revokes this connection's identity and its PeerJS registration; the next welcome
    // brings a new identity and a new link.
    this.identity = undefined;
    out.push({ type: "close-link" });
    // The serve socket goes with the identity; the next welcome starts in the hello's role again.
    if (this.status.role === "server") out.push({ type: "stop-serving" });
    this.publish({ role: this.config.role ?? "trainer" });
    if (this.pending !== undefined) this.inbox.push({ discard: this.pending.attempt });
    for (const attempt of this.errorFeedback?.pendingAttempts() ?? []) this.errorFeedback?.discard(attempt);
    this.computedAhead = undefined;
    this.lastComputed = undefined;
    this.pending = undefined;
    this.publish({ phase: "connecting", lastError: `${reason}; reconnecting in ${(retryInMs / 1000).toFixed(1)} s` });
  }

  /** Starts queued work while no task is in flight. */
  private drain(now: number, out: Command[]): void {
    while (this.busy === undefined && !this.stopped) {
      const next = this.inbox.shift();
      if (next === undefined) return;
      if ("discard" in next) this.run({ kind: "discard", attempt: next.discard }, out);
      else if ("ahead" in next) this.computeAhead(next.ahead, out);
      // After a reconnect, rounds of the old connection were aborted by the coordinator when we left.
      else if (next.generation !== this.generation && next.message.type === "round") continue;
      else this.dispatch(next.message, now, out);
    }
  }

  private dispatch(message: ResolvedCoordinatorMessage, now: number, out: Command[]): void {
    switch (message.type) {
      case "welcome":
        // A new coordinator session: its attempt ids may repeat an older one's (a restarted server
        // counts on from its checkpoint), so older connections' aborts must not shadow them.
        this.aborted.keepOnly(this.generation);
        this.identity = message.identity;
        this.publish({ role: this.config.role ?? "trainer" });
        this.batchSize = roundSamples(message.job);
        this.usesErrorFeedback = message.job.codec === "topk";
        this.errorFeedback = undefined;
        this.publish({ phase: "syncing", peerId: message.identity.peerId });
        this.run({ kind: "welcome", identity: message.identity, job: message.job, round: message.round }, out);
        return;
      case "round": {
        if (this.aborted.has(this.generation, message.attempt)) return;
        if (message.pipeline !== undefined) {
          // A pipeline round: this tab computes its stage of its replica (no lease ahead there).
          const position = this.identity === undefined ? undefined : pipelinePosition(message.pipeline, this.identity.peerId);
          if (position === undefined) return this.fail(`pipeline round ${message.attempt} does not place this tab`, out);
          this.running = { message, startedAt: now, generation: this.generation };
          this.publish({ phase: "training", share: undefined, stage: { ...position, of: message.pipeline.stages.length } });
          this.run({ kind: "compute", attempt: message.attempt, lease: message.lease, stage: { plan: message.pipeline, ...position } }, out);
          return;
        }
        const ahead = this.takeComputedAhead(message.lease) ?? this.takeLastComputed(message.lease);
        // A lease computed ahead is this round's computation now: kept, should this attempt abort.
        if (ahead !== undefined) this.lastComputed = { base: this.lastCommitted, lease: message.lease, report: ahead };
        this.running = { message, startedAt: now, generation: this.generation };
        this.publish({ phase: "training", share: undefined });
        if (ahead !== undefined) this.onComputed({ kind: "computed", attempt: message.attempt, report: ahead }, now, out);
        else this.run({ kind: "compute", attempt: message.attempt, lease: message.lease }, out);
        return;
      }
      case "commit":
        // A commit of an attempt we have no update pending for (never ran it, or dropped it) is not ours.
        if (this.pending?.attempt !== message.attempt) return;
        this.pending.commitHash = message.hash;
        this.run({ kind: "commit", attempt: message.attempt, round: message.round, hash: message.hash }, out);
        return;
      case "abort":
        if (this.pending?.attempt === message.attempt) this.pending = undefined;
        if (this.computedAhead?.base === message.attempt) this.computedAhead = undefined;
        this.errorFeedback?.discard(message.attempt);
        this.publish({ phase: "waiting", lastError: `round aborted: ${message.reason}` });
        this.run({ kind: "discard", attempt: message.attempt }, out);
        return;
      case "sync":
        // A fresh committed state replaces whatever update was pending. The residual goes too: it
        // was left over on top of weights this member no longer holds (a rollback, or it fell behind).
        this.pending = undefined;
        this.errorFeedback = undefined;
        this.computedAhead = undefined;
        this.lastComputed = undefined;
        this.publish({ phase: "syncing" });
        this.run({ kind: "sync", round: message.round }, out);
        return;
      case "upload":
        // The server lacks the committed state of this round (its uploader vanished): send ours.
        if (this.status.round === message.round && this.identity !== undefined) this.run({ kind: "export-state", round: message.round, attempt: undefined }, out);
        return;
      case "role":
        this.onRole(message.role, out);
        return;
      case "stop":
        this.stop(message.reason, out);
        return;
    }
  }

  /** Leaving (see `leaving`): only the reported attempt's commit or abort and the audits matter. */
  private whileLeaving(leaving: NonNullable<SessionMachine["leaving"]>, message: ResolvedCoordinatorMessage, out: Command[]): void {
    if (message.type === "audit") return this.answerAudit(message, out);
    if (message.type === "stop") return this.stop(message.reason, out);
    if (message.type === "commit" && message.attempt === leaving.attempt) {
      leaving.committed = true;
      return;
    }
    // Aborted: nothing of it will be checked. Anything after the commit: its audits came before.
    if ((message.type === "abort" && message.attempt === leaving.attempt) || leaving.committed) this.finishLeaving(out);
  }

  /** Ends leaving (stop clears it), restartable as the trainer's failure was. */
  private finishLeaving(out: Command[]): void {
    this.stop(this.leaving?.reason ?? "left", out, true);
  }

  /**
   * A spot check: send the contribution we committed to. The coordinator counts an audit nobody
   * answered as failed, so a missing one is shown, not hidden.
   */
  private answerAudit(message: Extract<ResolvedCoordinatorMessage, { type: "audit" }>, out: Command[]): void {
    const gradient = this.contributions.get(message.attempt);
    if (gradient === undefined || this.identity === undefined) {
      this.publish({ lastError: `spot check of round ${message.round}: no contribution of attempt ${message.attempt} kept` });
      return;
    }
    out.push({ type: "upload-contribution", round: message.round, gradient, auth: this.auth(this.identity) });
  }

  /**
   * The autoscaler moved this tab. It comes between rounds (after the commit of the last round this
   * tab was in), so nothing is pending; to training, the coordinator's sync follows.
   */
  private onRole(role: MemberRole, out: Command[]): void {
    if (role === this.status.role) return;
    const wasServing = this.status.role === "server";
    this.publish({ role });
    if (wasServing) out.push({ type: "stop-serving" });
    if (role === "server") this.startServing(out);
    else this.publish({ phase: "waiting" });
  }

  private startServing(out: Command[]): void {
    if (this.identity === undefined) return;
    this.publish({ phase: "serving" });
    out.push({ type: "serve", identity: this.identity });
  }

  private onResult(result: TaskResult, now: number, out: Command[]): void {
    const task = this.busy;
    this.busy = undefined;
    this.publish({ task: undefined });
    this.trace(`ended ${task?.kind ?? "nothing"}: ${result.kind}`);
    switch (result.kind) {
      case "failed":
        this.fail(`${result.task}: ${result.error}`, out, result.trainer);
        return;
      case "exported":
        // The upload runs beside the next tasks: the commit (and the next round) need not wait for it.
        // A pending state of an attempt aborted meanwhile is not sent: its slot is gone.
        if (this.identity !== undefined && !(task?.kind === "export-state" && task.attempt !== undefined && this.aborted.has(this.busyGeneration, task.attempt))) out.push({ type: "upload-state", round: result.round, bytes: result.bytes, auth: this.auth(this.identity) });
        if (task?.kind === "export-state") this.finishRound(task.attempt);
        return;
      case "synced":
        // Fetched for a connection that has since dropped: the next welcome syncs again.
        if (this.busyGeneration !== this.generation) return;
        this.publish({ phase: "waiting", round: result.round });
        this.send(out, { type: "ready", round: result.round, hash: result.hash });
        // A tab that joined to serve starts once it holds the model.
        if (this.status.role === "server") this.startServing(out);
        return;
      case "computed":
        if (result.ahead === true) this.keepComputedAhead(result, task);
        else {
          this.keepLastComputed(result, task);
          this.onComputed(result, now, out);
        }
        return;
      case "reduced":
        return this.onReduced(result, now, out);
      case "stage-failed":
      case "reduce-failed": {
        this.running = undefined;
        // Its own gradient was refused (not finite, or overflowing): a retry computes it afresh.
        if (result.code === "bad-input") this.lastComputed = undefined;
        this.publish({ phase: "waiting", lastError: result.message });
        if (result.code !== "aborted" || result.suspect !== undefined) {
          this.send(out, { type: "failed", attempt: result.attempt, code: result.code, suspect: result.suspect, message: result.message.slice(0, 480) });
        }
        return;
      }
      case "updated":
        this.onUpdated(result, out);
        return;
      case "committed":
        this.onCommitted(result, now, out);
        return;
      case "done":
        return;
    }
  }

  private onComputed(result: Extract<TaskResult, { kind: "computed" }>, now: number, out: Command[]): void {
    const running = this.running;
    if (running?.message.attempt !== result.attempt || this.aborted.has(running.generation, result.attempt)) {
      this.running = undefined;
      return;
    }
    const { gradient, computeMs, readbackMs, samples, loss, busyMs } = result.report;
    const { message } = running;
    // Commit to what we are about to send: a spot check after the commit must match this digest.
    this.contributions.set(message.attempt, gradient.slice());
    for (const attempt of this.contributions.keys()) if (this.contributions.size > KEPT_CONTRIBUTIONS) this.contributions.delete(attempt);
    this.send(out, { type: "phase", attempt: message.attempt, phase: "reducing", digest: contributionDigest(gradient) });
    running.grad = { computeMs, readbackMs, samples, loss, busyMs };
    running.reduceStartedAt = now;
    // The digest (and a spot check) cover the gradient as computed; the all-reduce also carries the
    // residual error feedback kept from earlier rounds, which the server cannot recompute.
    this.run({ kind: "reduce", attempt: message.attempt, plan: message.plan, gradient: this.withResidual(gradient), samples, frameBytes: message.frameBytes }, out);
  }

  private onReduced(result: Extract<TaskResult, { kind: "reduced" }>, now: number, out: Command[]): void {
    const running = this.running;
    if (running?.message.attempt !== result.attempt) return;
    running.allReduceMs = now - (running.reduceStartedAt ?? now);
    running.reduced = result;
    if (result.residual !== undefined) this.errorFeedback?.hold(result.attempt, result.residual);
    this.run({ kind: "update", attempt: result.attempt, mean: result.mean }, out);
  }

  private onUpdated(result: Extract<TaskResult, { kind: "updated" }>, out: Command[]): void {
    const running = this.running;
    if (running?.message.attempt !== result.attempt) return;
    const { message, grad, reduced, allReduceMs } = running;
    if (grad === undefined || reduced === undefined || allReduceMs === undefined) return;
    const timings = { computeMs: grad.computeMs, readbackMs: grad.readbackMs, allReduceMs, updateMs: result.updateMs, ...(grad.busyMs === undefined ? {} : { stageBusyMs: grad.busyMs }) };
    this.pending = { attempt: message.attempt, round: message.round, samples: grad.samples, timings, startedAt: running.startedAt };
    this.publish({
      lastTimings: timings,
      samplesPerSecond: leaseSpeed(grad.samples, computeTimeMs(grad)),
      share: grad.samples / this.batchSize,
      samplesDone: this.status.samplesDone + grad.samples,
    });
    this.send(out, {
      type: "result",
      attempt: message.attempt,
      hash: result.hash,
      samples: grad.samples,
      loss: grad.loss,
      timings,
      bytesSent: reduced.bytesSent,
      bytesReceived: reduced.bytesReceived,
      ...(reduced.clipped === undefined ? {} : { clipped: reduced.clipped }),
      ...(result.layerHashes === undefined ? {} : { layerHashes: result.layerHashes }),
    });
    // While the commit is awaited, compute the next round's lease on the pending weights: first in
    // line, before the commit (or anything else) that may already be queued.
    if (message.next !== undefined && message.next.length > 0) this.inbox.unshift({ ahead: { attempt: message.attempt, lease: message.next } });
    // The designated uploader sends its pending state at once: the server checks it before the
    // commit (a plan of one commits only then) and adopts it when the round commits with its hash.
    if (message.upload) {
      this.run({ kind: "export-state", round: message.round, attempt: message.attempt }, out);
      return;
    }
    this.running = undefined;
  }

  private onCommitted(result: Extract<TaskResult, { kind: "committed" }>, now: number, out: Command[]): void {
    const pending = this.pending;
    if (pending?.attempt !== result.attempt) return;
    this.pending = undefined;
    if (this.errorFeedback?.pendingAttempts().includes(result.attempt)) this.errorFeedback.commit(result.attempt);
    this.lastCommitted = result.attempt;
    this.lastComputed = undefined; // computed on the weights before this commit
    if (result.hash !== pending.commitHash) {
      this.fail(`committed hash ${pending.commitHash ?? "none"} differs from ours ${result.hash}`, out, true);
      return;
    }
    const split = { ...pending.timings, round: pending.round, uploadMs: result.uploadMs, roundMs: now - pending.startedAt };
    this.publish({
      phase: "waiting",
      round: pending.round,
      roundsDone: this.status.roundsDone + 1,
      samplesCommitted: this.status.samplesCommitted + pending.samples,
      committed: [...this.status.committed, [pending.round, result.hash] as [number, string]].slice(-COMMITTED_HISTORY),
      rounds: [...this.status.rounds, split].slice(-COMMITTED_HISTORY),
    });
  }

  /** Starts the computation of a lease ahead, unless its base update is gone (aborted, dropped). */
  private computeAhead(ahead: { attempt: number; lease: number[] }, out: Command[]): void {
    if (this.pending?.attempt !== ahead.attempt || this.aborted.has(this.generation, ahead.attempt)) return;
    this.run({ kind: "compute", attempt: ahead.attempt, lease: ahead.lease, ahead: true }, out);
  }

  private keepComputedAhead(result: Extract<TaskResult, { kind: "computed" }>, task: Task | undefined): void {
    if (task?.kind !== "compute" || this.aborted.has(this.busyGeneration, result.attempt) || this.busyGeneration !== this.generation) return;
    this.computedAhead = { base: result.attempt, lease: task.lease, report: result.report };
  }

  /** Keeps a round's computation (a pipeline stage's is not a contribution to keep). */
  private keepLastComputed(result: Extract<TaskResult, { kind: "computed" }>, task: Task | undefined): void {
    if (task?.kind !== "compute" || task.stage !== undefined || this.busyGeneration !== this.generation) return;
    this.lastComputed = { base: this.lastCommitted, lease: task.lease, report: result.report };
  }

  /** The contribution this tab computed last, if for this very lease on the state it holds now. */
  private takeLastComputed(lease: readonly number[]): GradientReport | undefined {
    const last = this.lastComputed;
    if (last === undefined || last.base !== this.lastCommitted || !sameLease(last.lease, lease)) return undefined;
    this.trace(`reuse lease of ${lease.length}`);
    return last.report;
  }

  /** The contribution computed ahead for this lease, if it started from the update committed last. */
  private takeComputedAhead(lease: readonly number[]): GradientReport | undefined {
    const ahead = this.computedAhead;
    this.computedAhead = undefined;
    if (ahead === undefined || ahead.base !== this.lastCommitted) return undefined;
    return sameLease(ahead.lease, lease) ? ahead.report : undefined;
  }

  /** The gradient plus the residual error feedback kept for it, when the codec needs one. */
  private withResidual(gradient: Float32Array): Float32Array {
    if (!this.usesErrorFeedback) return gradient;
    this.errorFeedback ??= new ErrorFeedback(gradient.length);
    return this.errorFeedback.correct(gradient);
  }

  /** The uploader's round is reported and uploaded: nothing of it runs any more. */
  private finishRound(attempt: number | undefined): void {
    if (attempt !== undefined && this.running?.message.attempt === attempt) this.running = undefined;
  }

  private run(task: Task, out: Command[]): void {
    this.busy = task;
    this.busyGeneration = this.generation;
    this.publish({ task: { kind: task.kind, since: this.now } });
    this.trace(`run ${task.kind}${"attempt" in task && task.attempt !== undefined ? ` a${task.attempt}` : ""}`);
    out.push({ type: "run", task });
  }

  /** Appends to the status's trace (a new array: published statuses are shallow copies). */
  private trace(entry: string): void {
    this.status.trace = [...this.status.trace.slice(1 - TRACE_LENGTH), `${Math.round(this.now)} ${entry}`];
  }

  private send(out: Command[], message: Extract<Command, { type: "send" }>["message"]): void {
    out.push({ type: "send", message });
  }

  private auth(identity: Identity): { peerId: string; sessionToken: string } {
    return { peerId: identity.peerId, sessionToken: identity.sessionToken };
  }

  /** `restartable`: this tab's trainer failed, or what it computed did; the stop says a fresh trainer may carry on. */
  private fail(error: string, out: Command[], restartable = false): void {
    this.publish({ lastError: error });
    this.stop(`error: ${error}`, out, restartable);
  }

  private stop(reason: string, out: Command[], restartable = false): void {
    if (this.stopped) return;
    const reported = this.pending;
    if (this.leaving === undefined && restartable && reported !== undefined && this.identity !== undefined) {
      // What already came settles it: an abort of the attempt, or anything after its commit (the
      // audits sent with a commit come right after it and were answered on arrival).
      const queued = this.inbox.flatMap((q) => ("message" in q && q.generation === this.generation ? [q.message] : []));
      const commitAt = queued.findIndex((m) => m.type === "commit" && m.attempt === reported.attempt);
      const committed = reported.commitHash !== undefined || commitAt >= 0;
      const settled = this.aborted.has(this.generation, reported.attempt) || (committed && queued.length > commitAt + 1);
      if (!settled) {
        this.leaving = { reason, attempt: reported.attempt, committed };
        this.inbox.length = 0;
        this.publish({ phase: "leaving" });
        out.push({ type: "leaving", attempt: reported.attempt }, { type: "close-link" });
        return;
      }
    }
    // Leaving ends here too: by its own end, or by a stop of the volunteer or the server (for good).
    this.leaving = undefined;
    this.publish({ phase: "stopped", stopReason: reason });
    this.inbox.length = 0;
    out.push(restartable ? { type: "stop", reason, restartable } : { type: "stop", reason });
  }

  private publish(patch: Partial<SessionStatus>): void {
    Object.assign(this.status, patch);
  }
}

const sameLease = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((sample, k) => sample === b[k]);
