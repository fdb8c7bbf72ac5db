import { leaseSpeed, MAX_ATTEMPT, pipelinePosition, stageMembers, type Plan, type ResolvedCoordinatorMessage } from "@crowdtrain/protocol";
import { Accusations } from "./accusations.ts";
import { UnattributedAborts } from "./unattributed.ts";
import { LeasesAhead } from "./ahead.ts";
import { RetainedLeases, type Kept } from "./retained.ts";
import { Audits, type PendingAudit } from "./audits.ts";
import { StateCustody } from "./custody.ts";
import { UploaderChoice } from "./uploaders.ts";
import { Lineage, type RollbackTarget } from "./lineage.ts";
import { mulberry32 } from "./permutation.ts";
import { splitBatch } from "./leases.ts";
import { buildPlan, type PlanSettings } from "./plans.ts";
import { Membership } from "./membership.ts";
import { keepStages, pipelineLoss, pipelineTally, shareBatch } from "./pipeline-rounds.ts";
import { disputeBackoffMs, outliers, separateAccused, tally } from "./rounds.ts";
import { Sampler } from "./sampler.ts";
import type {
  AbortCause,
  CommittedRound,
  CoordinatorConfig,
  CoordinatorEffect,
  CoordinatorEvent,
  EpochCoverage,
  Member,
  PipelineCoordination,
  PipelineRound,
  MemberRole,
  OpenRound,
  OpenRoundView,
  RoundReport,
} from "./types.ts";

export type CoordinatorStatus = "waiting" | "running" | "paused" | "done";

/** What survives a server restart (written into checkpoints by the server). */
export type CoordinatorSnapshot = {
  committedRound: number;
  committedHash: string;
  epoch: number;
  queue: number[];
  uses: number[];
  nextAttempt: number;
  finishedEpochs: EpochCoverage[];
  status: CoordinatorStatus;
  /** The target in rounds as the operator last set it (absent in older checkpoints: the job's own). */
  maxRounds?: number | null;
};

/** What the server may accept from a member's `PUT /api/state/<round>` right now. */
export type UploadSlot =
  /** The pending state of the open attempt (checked before a plan of one may commit). */
  | { kind: "pending"; round: number; attempt: number; stage?: PendingStage }
  /** The committed state of `round`, which the server still lacks. */
  | { kind: "committed"; round: number; hash: string };

/** A pipeline round's uploader sends its stage's state only: stage `index`, the layers [from, to). */
export type PendingStage = { index: number; from: number; to: number };

/** Failure codes a member reports from its own observation of a neighbour (not relayed hearsay). */
const FIRST_HAND = new Set(["peer-gone", "timeout", "bad-frame"]);
/**
 * The shortest an honest member waits in its all-reduce before it reports a silent peer (the
 * all-reducer's progressTimeoutMs; a peer still computing gets its longer ringStartTimeoutMs). A
 * timeout reported sooner after the reporter entered its all-reduce is not one the server can back.
 */
const MIN_HONEST_WAIT_MS = 5_000;
/** How many recent attempts' members are remembered, so a second witness of an aborted attempt is heard. */
const RECENT_ATTEMPTS = 16;
const DEFAULT_AUDIT_TIMEOUT_MS = 30_000;
/** A member may abort an attempt by a failure naming nobody once per this many committed rounds (UnattributedAborts). */
const UNATTRIBUTED_ABORT_ROUNDS = 10;
/** A finished job waits for its final state this many upload timeouts (the uploader, then another). */
const FINAL_STATE_ASKS = 2;
const DEFAULT_MAX_PENDING_AUDITS = 4;
export const DEFAULT_LINEAGE_ROUNDS = 32;

/** What an audited member may upload now (PUT /api/contribution/<round>), and what it must match. */
export type AuditSlot = { round: number; attempt: number; lease: readonly number[]; digest: string; baseRound: number };

/**
 * The cluster as a pure state machine: `handle(event)` updates the state and returns the effects
 * (messages to send, log lines, commits) for the server to carry out. No I/O, no clock: time comes
 * in on the events. It composes three parts, each with its own invariant: the Sampler (no sample
 * lost or doubled in an epoch), the Membership (states, grace, strikes) and the Accusations (a
 * member is punished only on corroborated evidence); round decisions (`tally`) are pure functions.
 *
 * Rules:
 * - A round opens when none is running, the re-plan delay after the last departure or abort has
 *   passed, and enough trainers hold the committed state. Its batch is split by measured speed.
 * - It commits when every member reported and the hashes agree (or, with three or more, a strict
 *   majority agrees: the others are struck and re-synced). A plan of one commits only once the
 *   server checked the member's uploaded state. Anything else aborts it: the leases go back to the
 *   front of the queue and the members, who restore their committed state, are ready at once.
 * - A member is struck for what the coordinator sees itself (a lease it misreports, silence past
 *   the deadline, a minority hash, a state that fails the server's check) or for corroborated
 *   accusations; an accusation nobody corroborates counts against its author.
 */
export class Coordinator {
  private readonly membership: Membership;
  private readonly sampler: Sampler;
  private readonly accusations: Accusations;
  private readonly unattributed = new UnattributedAborts(UNATTRIBUTED_ABORT_ROUNDS);
  private readonly audits: Audits;
  private readonly lineage: Lineage;
  private current: OpenRound | undefined;
  private committedRound = 0;
  private committedHash: string;
  private nextAttempt = 1;
  private status: CoordinatorStatus = "waiting";
  private maxRounds: number | undefined;
  /** No round opens before this time (a burst of departures is re-planned once). */
  private replanAt = 0;
  /** Rounds in a row whose hashes split without a majority. */
  private disputes = 0;
  private readonly recent = new Map<number, ReadonlySet<string>>();
  /** The next round's leases, handed out with the last committed one (overlap). */
  private readonly ahead = new LeasesAhead();
  private readonly retained = new RetainedLeases();
  /** The committed state the server still lacks, whom it asked for it, and the finished job's stop. */
  private readonly custody = new StateCustody();
  /** Role changes waiting for their member's round to end. */
  private readonly deferredRoles = new Map<string, MemberRole>();
  /** Why the last pipeline plan could not be formed (logged once, not at every event). */
  private planProblem: string | undefined;
  /** Picks each round's uploader by how soon its last upload landed (uploaders.ts). */
  private readonly uploaders = new UploaderChoice();

  constructor(
    readonly config: CoordinatorConfig,
    snapshot?: CoordinatorSnapshot,
  ) {
    if (!(config.batchSize > 0 && config.minWorkers >= 1)) throw new RangeError("batchSize and minWorkers must be positive");
    this.maxRounds = config.maxRounds;
    this.membership = new Membership(config.maxStrikes, config.strikeDecayRounds);
    this.accusations = new Accusations(config.accusationWindowMs);
    this.committedHash = config.initialHash;
    this.sampler = new Sampler(config.trainCount, config.seed, snapshot);
    this.audits = new Audits(
      config.spotCheck ?? 0,
      config.maxPendingAudits ?? DEFAULT_MAX_PENDING_AUDITS,
      config.auditTimeoutMs ?? DEFAULT_AUDIT_TIMEOUT_MS,
      config.random ?? mulberry32(config.seed ^ 0x5eed),
    );
    this.lineage = new Lineage(config.lineageRounds ?? DEFAULT_LINEAGE_ROUNDS);
    if (snapshot !== undefined) {
      this.committedRound = snapshot.committedRound;
      this.committedHash = snapshot.committedHash;
      this.nextAttempt = snapshot.nextAttempt;
      this.status = snapshot.status;
      if (snapshot.maxRounds !== undefined) this.maxRounds = snapshot.maxRounds ?? undefined;
    }
    this.lineage.start(this.committedRound, this.committedHash, this.sampler.epoch);
  }

  handle(event: CoordinatorEvent): CoordinatorEffect[] {
    const effects: CoordinatorEffect[] = [];
    const { now } = event;
    switch (event.type) {
      case "join":
        this.membership.add(event);
        effects.push({ type: "log", kind: "joined", text: `${event.peerId} joined (${event.backend}${event.role !== undefined && event.role !== "trainer" ? `, as ${event.role}` : ""})` });
        break;
      case "ready": {
        const member = this.membership.get(event.peerId);
        if (member === undefined) break;
        // A serving member follows the commits by itself (hot swaps); it is never asked to sync.
        if (member.state === "serving") {
          member.holds = event.round;
          member.lastHash = event.hash;
          break;
        }
        if (event.round === this.committedRound && event.hash === this.committedHash) this.membership.holdsState(member, event.round, event.hash);
        else if (member.state !== "training") this.askToSync(member, now, effects);
        break;
      }
      case "phase":
        if (event.phase === "reducing" && this.current?.attempt === event.attempt && this.current.members.has(event.peerId)) {
          if (!this.current.reducingAt.has(event.peerId)) this.current.reducingAt.set(event.peerId, now);
          // The first digest counts: the member committed to it before its all-reduce began.
          if (event.digest !== undefined && !this.current.digests.has(event.peerId)) this.current.digests.set(event.peerId, event.digest);
        }
        break;
      case "audit-received":
        this.audits.receive(event.peerId, event.round, now);
        break;
      case "audit-checked":
        this.onAuditChecked(event, now, effects);
        break;
      case "result":
        this.onResult(event, now, effects);
        break;
      case "failed":
        this.onFailed(event, now, effects);
        break;
      case "leave":
        this.onLeave(event.peerId, event.reason, now, effects);
        break;
      case "state-checked":
        this.onStateChecked(event, now, effects);
        break;
      case "state-stored":
        this.lineage.markStored(event.round);
        if (this.custody.stored(event.round)) this.stopMembers(effects);
        break;
      case "tick":
        this.onTick(now, effects);
        break;
      case "pause":
        if (this.status === "running" || this.status === "waiting") {
          this.status = "paused";
          effects.push({ type: "log", kind: "paused", text: "paused by the operator" });
        }
        break;
      case "resume":
        if (this.status === "paused") {
          this.status = this.committedRound > 0 ? "running" : "waiting";
          effects.push({ type: "log", kind: "resumed", text: "resumed by the operator" });
        }
        break;
      case "stop":
        this.finish(event.reason, now, effects);
        break;
      case "set-role":
        this.setRole(event.peerId, event.role, now, effects);
        break;
      case "set-max-rounds":
        if (this.status === "done") break;
        this.maxRounds = event.rounds;
        effects.push({ type: "log", kind: "target", text: `target set to ${event.rounds ?? "no"} rounds by the operator` });
        if (this.maxRounds !== undefined && this.committedRound >= this.maxRounds) this.finish(`reached ${this.maxRounds} rounds`, now, effects);
        break;
    }
    this.applyDeferredRoles(now, effects);
    this.maybeOpenRound(now, effects);
    return effects;
  }

  /** A member in the open round changes role once that round is over, so the round is not disturbed. */
  private setRole(peerId: string, role: MemberRole, now: number, effects: CoordinatorEffect[]): void {
    const member = this.membership.get(peerId);
    if (member === undefined) return;
    if (member.state === "training") this.deferredRoles.set(peerId, role);
    else this.applyRole(member, role, now, effects);
  }

  private applyDeferredRoles(now: number, effects: CoordinatorEffect[]): void {
    for (const [peerId, role] of this.deferredRoles) {
      const member = this.membership.get(peerId);
      if (member?.state === "training") continue;
      this.deferredRoles.delete(peerId);
      if (member !== undefined) this.applyRole(member, role, now, effects);
    }
  }

  private applyRole(member: Member, role: MemberRole, now: number, effects: CoordinatorEffect[]): void {
    this.deferredRoles.delete(member.peerId);
    if (member.role === role) return;
    effects.push({ type: "log", kind: "role", text: `${member.peerId} ${role === "server" ? "moves to serving" : `moves to ${role === "trainer" ? "training" : role}`}` });
    effects.push({ type: "role-changed", peerId: member.peerId, role });
    this.send(member.peerId, { type: "role", role }, effects);
    if (role === "server") {
      // An upload it owes (its round's pending state, or a committed one it was asked for) still
      // comes: the serving tab holds that state and its upload is already on its way.
      this.membership.serve(member);
      return;
    }
    member.role = role;
    // Its weights moved on (hot swaps) or fell behind while it served: it fetches the committed state.
    this.askToSync(member, now, effects);
  }

  private onResult(event: Extract<CoordinatorEvent, { type: "result" }>, now: number, effects: CoordinatorEffect[]): void {
    const round = this.current;
    if (round === undefined || round.attempt !== event.attempt || !round.members.has(event.peerId) || round.reports.has(event.peerId)) return;
    const leased = leaseOf(round, event.peerId)?.length ?? 0;
    if (event.samples !== leased) {
      this.abort("lease-mismatch", `${event.peerId} reported ${event.samples} samples for a lease of ${leased}`, now, effects);
      this.strike(event.peerId, `reported ${event.samples} samples for a lease of ${leased}`, now, effects);
      return;
    }
    round.reports.set(event.peerId, {
      hash: event.hash,
      samples: event.samples,
      loss: event.loss,
      timings: event.timings,
      bytesSent: event.bytesSent,
      bytesReceived: event.bytesReceived,
      clipped: event.clipped?.filter((peer) => round.members.has(peer)),
      ...(event.layerHashes === undefined ? {} : { layerHashes: event.layerHashes }),
    });
    if (!round.reducingAt.has(event.peerId)) round.reducingAt.set(event.peerId, now);
    round.reportedAt.set(event.peerId, now);
    this.uploaders.reported(round.round, event.peerId, now);
    this.tryCommit(round, now, effects);
  }

  private tryCommit(round: OpenRound, now: number, effects: CoordinatorEffect[]): void {
    if (round.reports.size < round.members.size) return;
    if (round.pipeline !== undefined) return this.tryCommitPipeline(round, round.pipeline, now, effects);
    const vote = tally(round.reports);
    if (vote.kind === "split") {
      this.disputes++;
      this.abort("hash-split", `weights hashes disagree: ${vote.detail}`, now, effects);
      this.replanAt = Math.max(this.replanAt, now + disputeBackoffMs(this.disputes));
      return;
    }
    // Nobody else computed this state: only the server's check of it stands between it and a commit.
    if (round.members.size === 1 && round.verifiedHash !== vote.hash) return;
    this.commit(round, vote.hash, vote.dissenters, now, effects);
  }

  /**
   * A pipeline round commits when every stage's replicas agree (pipelineTally) and the server checked
   * each stage's uploaded state with that stage's hash: it then holds the whole committed state (it
   * joins the stages'). With one replica a stage is one tab's word, checked only for finiteness and
   * its hash (spot checks do not cover pipeline jobs yet).
   */
  private tryCommitPipeline(round: OpenRound, pipeline: PipelineRound, now: number, effects: CoordinatorEffect[]): void {
    const combine = this.config.pipeline?.combine;
    if (combine === undefined) throw new Error("a pipeline round without the job's pipeline coordination");
    const vote = pipelineTally(pipeline.plan, round.reports, combine);
    if (vote.kind === "split") {
      this.disputes++;
      this.abort("hash-split", `weights hashes disagree: ${vote.detail}`, now, effects);
      this.replanAt = Math.max(this.replanAt, now + disputeBackoffMs(this.disputes));
      return;
    }
    // An uploader whose own update dissents (outvoted by three or more replicas) uploaded a state the
    // round cannot commit: abort now and strike it, rather than waiting out the deadline blaming nobody.
    const wrong = vote.stageHashes.flatMap((hash, stage) => {
      const checked = pipeline.checked.get(stage);
      return checked !== undefined && checked !== hash ? [pipeline.uploaders[stage] as string] : [];
    });
    if (wrong.length > 0) {
      this.abort("check-failed", `${wrong.join(", ")} uploaded a stage state other than its replicas agreed on`, now, effects);
      for (const peer of wrong) this.strike(peer, `uploaded a stage state outvoted by its stage's replicas in round ${round.round}`, now, effects);
      return;
    }
    if (!vote.stageHashes.every((hash, stage) => pipeline.checked.get(stage) === hash)) return;
    this.commit(round, vote.hash, vote.dissenters, now, effects, vote.stageHashes);
  }

  private commit(round: OpenRound, hash: string, dissenters: readonly string[], now: number, effects: CoordinatorEffect[], stageHashes?: string[]): void {
    this.current = undefined;
    this.disputes = 0;
    this.committedRound = round.round;
    this.committedHash = hash;
    let samples = 0;
    let weightedLoss = 0;
    for (const [peer, lease] of round.leases) {
      this.sampler.markUsed(lease);
      const report = round.reports.get(peer) as RoundReport;
      samples += lease.length;
      weightedLoss += report.loss * report.samples;
    }
    // A pipeline replica's loss is its last stage's (the others compute none).
    const loss = round.pipeline === undefined ? weightedLoss / samples : pipelineLoss(round.pipeline.plan, round.pipeline.leases, round.reports);
    for (const peer of round.members) {
      const report = round.reports.get(peer) as RoundReport;
      const member = this.membership.get(peer);
      if (member === undefined) continue;
      if (dissenters.includes(peer)) continue;
      member.state = "ready";
      member.holds = round.round;
      member.lastHash = hash;
      member.lastRoundMs = now - round.openedAt;
      member.bytesSent += report.bytesSent;
      member.bytesReceived += report.bytesReceived;
      this.membership.recordClean(member);
      // A pipeline stage's members hold only that stage's layers of the committed state.
      const position = round.pipeline === undefined ? undefined : pipelinePosition(round.pipeline.plan, peer);
      member.stage = position === undefined ? undefined : round.pipeline?.plan.stages[position.stage];
      // Speed as measured here: the lease over the time from opening the round to entering the
      // all-reduce. An exponential average, so one hiccup does not swing the next split.
      const speed = leaseSpeed(leaseOf(round, peer)?.length ?? 0, (round.reducingAt.get(peer) ?? now) - (round.startedAt.get(peer) ?? round.openedAt));
      member.samplesPerSecond = member.samplesPerSecond === undefined ? speed : 0.7 * member.samplesPerSecond + 0.3 * speed;
    }
    for (const [peer, owners] of outliers(round.reports)) {
      if (dissenters.includes(peer)) continue;
      this.strike(peer, `its gradient was clipped as an outlier by ${owners} of ${round.members.size} shard owners in round ${round.round}`, now, effects);
    }
    for (const peer of dissenters) {
      const member = this.membership.get(peer);
      if (member === undefined) continue;
      const theirs = round.reports.get(peer)?.hash ?? "none";
      this.send(peer, { type: "abort", attempt: round.attempt, reason: `your hash ${theirs.slice(0, 12)} disagrees with the majority's ${hash.slice(0, 12)}` }, effects);
      this.askToSync(member, now, effects);
      this.strike(peer, `reported hash ${theirs.slice(0, 12)} against the majority's ${hash.slice(0, 12)} in round ${round.round}`, now, effects);
    }
    // Members that were ready at the previous round but not in this plan are now one behind. A
    // pipeline's spare waits for a place to free up (R × K is full), so no round waits for its sync.
    for (const member of this.membership.values()) {
      if (member.state === "ready" && member.holds !== round.round) this.askToSync(member, now, effects, round.pipeline === undefined);
    }
    // One message object for every member: the server's encoder serializes it once.
    const committed: ResolvedCoordinatorMessage = { type: "commit", attempt: round.attempt, round: round.round, hash };
    for (const peer of round.members) {
      if (!dissenters.includes(peer)) this.send(peer, committed, effects);
    }
    const commit: CommittedRound = {
      round: round.round,
      attempt: round.attempt,
      epoch: round.epoch,
      hash,
      plan: round.plan,
      samples,
      loss: samples > 0 ? loss : Number.NaN,
      roundMs: now - round.openedAt,
      // Not copied: the round is over and its map is never written again. Object.fromEntries of
      // 1,000 member ids built ~1 MB of hidden classes per commit (heap sampling, npm run bench:load).
      reports: round.reports,
      uploader: round.uploader,
      ...(round.pipeline === undefined || stageHashes === undefined ? {} : { pipeline: { plan: round.pipeline.plan, stageHashes } }),
    };
    effects.push({ type: "committed", commit });
    this.ahead.keep(round.round, round.next, round.reportedAt);
    this.lineage.push({ round: round.round, hash, epoch: round.epoch, members: round.members, samples: round.plan.members.flatMap((p) => round.leases.get(p) ?? []) });
    // The uploader sent its pending state already; if it is a dissenter (or it never arrives), ask another.
    this.custody.want(round.round, hash, round.uploader, now);
    this.uploaders.committed(round.round);
    if (dissenters.includes(round.uploader)) this.askNextUploader(now, effects);
    if (this.maxRounds !== undefined && this.committedRound >= this.maxRounds) this.finish(`reached ${this.maxRounds} rounds`, now, effects);
    // Drawn after the commit, so a member cannot know while it computes whether it will be checked.
    else this.drawAudits(round, now, effects);
  }

  private drawAudits(round: OpenRound, now: number, effects: CoordinatorEffect[]): void {
    // An audit recomputes from the state the round started from. If the server lacks it now, it
    // never gets it (custody has moved on to this round, and a late upload of it is refused), so
    // every audit drawn would come out inconclusive after costing its member an upload.
    if (!this.audits.drawing) return;
    if (!this.lineage.isStored(round.round - 1)) {
      effects.push({ type: "log", kind: "audit", text: `no spot checks of round ${round.round}: the server lacks the state of round ${round.round - 1} they would recompute from` });
      return;
    }
    const candidates = round.plan.members
      .filter((peer) => this.membership.get(peer) !== undefined)
      .map((peerId) => ({ peerId, lease: round.leases.get(peerId) ?? [], digest: round.digests.get(peerId) }));
    for (const audit of this.audits.draw(candidates, round.round, round.attempt, now)) {
      if (audit.digest === undefined) {
        this.audits.settle(audit.peerId, audit.round, false);
        this.auditFailed(audit, "it committed to no digest of its contribution before the all-reduce", undefined, now, effects);
        continue;
      }
      effects.push({ type: "log", kind: "audit", text: `spot check: ${audit.peerId}'s contribution to round ${round.round} (${audit.lease.length} samples)` });
      this.send(audit.peerId, { type: "audit", round: round.round, attempt: round.attempt }, effects);
    }
  }

  private onAuditChecked(event: Extract<CoordinatorEvent, { type: "audit-checked" }>, now: number, effects: CoordinatorEffect[]): void {
    const audit = this.audits.settle(event.peerId, event.round, event.outcome === "passed");
    if (audit === undefined) return;
    if (event.outcome === "failed") {
      this.auditFailed(audit, event.detail, event.relativeError, now, effects);
      return;
    }
    this.auditSettled(audit, event.outcome, event.relativeError, event.detail, effects);
  }

  /** What audits keep of members that are gone and have no audit pending any more (their last pass). */
  private forgetDeparted(peers: Iterable<string>): void {
    for (const peer of peers) if (this.membership.get(peer) === undefined && !this.audits.pendingFor(peer)) this.audits.forget(peer);
  }

  /** An audit passed, or could not be judged (blaming nobody). */
  private auditSettled(audit: PendingAudit, outcome: "passed" | "inconclusive", relativeError: number | undefined, detail: string, effects: CoordinatorEffect[]): void {
    const member = this.membership.get(audit.peerId);
    if (member !== undefined && outcome === "passed") member.audits.passed++;
    this.forgetDeparted([audit.peerId]);
    effects.push({ type: "audited", verdict: { round: audit.round, peer: audit.peerId, outcome, relativeError, detail } });
    effects.push({ type: "log", kind: "audit", text: `spot check of ${audit.peerId} in round ${audit.round} ${outcome}: ${detail}` });
  }

  /**
   * A contribution failed its spot check (or was never shown): the member is evicted (its address
   * banned) and every round it touched since its last passed audit is rolled back, since it may
   * have poisoned any of them.
   */
  private auditFailed(audit: PendingAudit, why: string, relativeError: number | undefined, now: number, effects: CoordinatorEffect[]): void {
    const member = this.membership.get(audit.peerId);
    if (member !== undefined) member.audits.failed++;
    effects.push({ type: "audited", verdict: { round: audit.round, peer: audit.peerId, outcome: "failed", relativeError, detail: why } });
    effects.push({ type: "log", kind: "audit", text: `spot check of ${audit.peerId} in round ${audit.round} FAILED: ${why}` });
    const target = this.lineage.rollbackFor(audit.peerId, this.audits.trustedThrough(audit.peerId));
    this.audits.forget(audit.peerId);
    if (target !== undefined) this.rollBack(target, `${audit.peerId} failed the spot check of round ${audit.round}`, now, effects);
    if (member !== undefined) this.evict(audit.peerId, `failed the spot check of round ${audit.round}: ${why}`, now, effects);
  }

  /**
   * Commits the state of an earlier round under a new round number (round numbers only grow, so no
   * stored state, upload or checkpoint is ever overwritten), and sends every member to it. The
   * undone rounds' samples of this epoch go back to the queue.
   */
  private rollBack(target: RollbackTarget, why: string, now: number, effects: CoordinatorEffect[]): void {
    this.abort("rollback", `rolling back: ${why}`, now, effects);
    let lost = 0;
    for (const entry of target.undone) {
      if (entry.epoch === this.sampler.epoch) this.sampler.unmarkUsed(entry.samples);
      else lost += entry.samples.length;
    }
    const undone = target.undone.map((e) => e.round);
    this.committedRound++;
    this.committedHash = target.to.hash;
    this.disputes = 0;
    this.custody.forget();
    this.forgetDeparted(this.audits.dropAfter(target.to.round));
    this.lineage.truncateAfter(target.to.round);
    this.lineage.push({ round: this.committedRound, hash: target.to.hash, epoch: this.sampler.epoch, members: new Set(), samples: [] });
    const range = undone.length === 1 ? `round ${undone[0]}` : `rounds ${undone[0]}..${undone.at(-1)}`;
    const notes = [target.truncated ? `its earlier rounds lie beyond the ${this.config.lineageRounds ?? DEFAULT_LINEAGE_ROUNDS}-round history` : "", lost > 0 ? `${lost} samples of a finished epoch are not retrained` : ""].filter((n) => n !== "");
    // The undone rounds are trained again: a round target moves by as many rounds (the rollback's own included).
    if (this.maxRounds !== undefined) {
      this.maxRounds += undone.length + 1;
      notes.push(`the target moves to ${this.maxRounds} rounds to retrain them`);
    }
    effects.push({ type: "rolled-back", round: this.committedRound, to: target.to.round, hash: target.to.hash, undone });
    effects.push({ type: "log", kind: "rollback", text: `${why}: undid ${range}; round ${this.committedRound} restarts from the state of round ${target.to.round}${notes.length > 0 ? ` (${notes.join("; ")})` : ""}` });
    for (const member of this.membership.values()) this.askToSync(member, now, effects);
  }

  private onFailed(event: Extract<CoordinatorEvent, { type: "failed" }>, now: number, effects: CoordinatorEffect[]): void {
    const accuser = event.peerId;
    const members = this.current?.attempt === event.attempt ? this.current.members : this.recent.get(event.attempt);
    if (members === undefined || !members.has(accuser)) return;
    // Relayed aborts ("aborted") repeat someone else's word: only first-hand observations accuse.
    const { suspect, code } = event;
    const accused = suspect !== undefined && suspect !== accuser && members.has(suspect) && FIRST_HAND.has(code) ? suspect : undefined;
    const current = this.current?.attempt === event.attempt;
    // Read before the abort below closes the round.
    const straggler = accused !== undefined && current && this.stillComputing(accused, accuser, code, now);
    // Naming nobody it could be judged against: free once per UNATTRIBUTED_ABORT_ROUNDS, a strike after.
    // (Not acting on it instead left an honest reporter's attempt to stall until the deadline.)
    const unattributed = current && accused === undefined && code !== "bad-input" && !this.unattributed.take(accuser, this.committedRound);
    if (current) this.abort("failure", `${accuser} failed (${code}): ${event.message}`, now, effects);
    if (unattributed) {
      this.strike(accuser, `failed (${code}) naming nobody again within ${UNATTRIBUTED_ABORT_ROUNDS} rounds`, now, effects);
      return;
    }
    // Its own input was refused (a non-finite gradient, an impossible sample count): its fault,
    // and a member doing it every round would otherwise abort every round without a strike.
    if (code === "bad-input") {
      this.strike(accuser, `its own contribution was refused (${event.message.slice(0, 200)})`, now, effects);
      return;
    }
    if (accused === undefined) return;
    if (this.membership.get(accused) === undefined) return; // it left: the accusation is confirmed, nothing to do
    if (straggler) {
      // The server is the second witness: it never heard the suspect enter the all-reduce, so
      // "nothing from it" is true. A slow volunteer is no cheater: nobody is struck, and the abort
      // bounded its speed, so the next split gives it less. (In a groups grid a member's first
      // group may be two: its partner was the only possible witness, and was struck for it.)
      effects.push({ type: "log", kind: "straggler", text: `${accuser} timed out waiting for ${accused}, which was still computing: nobody struck` });
      return;
    }
    const outcome = this.accusations.record({ accuser, suspect: accused, attempt: event.attempt, at: now });
    if (outcome.kind === "corroborated") this.knockBack(accused, `named by ${outcome.accusers.join(" and ")}`, now, effects);
  }

  /**
   * A timeout `accuser` reports against `suspect` in the open attempt that the server saw itself:
   * the suspect never said it entered the all-reduce, and the accuser had been in it for at least
   * MIN_HONEST_WAIT_MS (any member can send a timeout; one sent sooner is not backed).
   */
  private stillComputing(suspect: string, accuser: string, code: string, now: number): boolean {
    const round = this.current;
    if (code !== "timeout" || round === undefined || round.reducingAt.has(suspect)) return false;
    const waitingSince = round.reducingAt.get(accuser);
    return waitingSince !== undefined && now - waitingSince >= MIN_HONEST_WAIT_MS;
  }

  private onLeave(peerId: string, reason: string, now: number, effects: CoordinatorEffect[]): void {
    const member = this.membership.remove(peerId);
    this.uploaders.forget(peerId);
    if (member === undefined) return;
    effects.push({ type: "log", kind: "left", text: `${peerId} left: ${reason}` });
    effects.push({ type: "departed", member, reason });
    this.afterDeparture(peerId, `${peerId} left: ${reason}`, now, effects);
  }

  private afterDeparture(peerId: string, reason: string, now: number, effects: CoordinatorEffect[]): void {
    this.accusations.confirmByDeparture(peerId);
    this.accusations.forgetAccuser(peerId);
    this.unattributed.forget(peerId);
    if (this.current?.members.has(peerId)) this.abort("departure", reason, now, effects);
    if (this.custody.isAsked(peerId)) this.askNextUploader(now, effects);
    // Leaving is how a member would dodge a spot check it knows it fails: unanswered means failed.
    // One it answered (the server holds its contribution) waits for the server's verdict.
    for (const audit of this.audits.abandon(peerId)) this.auditFailed(audit, `it left before answering (${reason})`, undefined, now, effects);
    this.forgetDeparted([peerId]);
  }

  private onStateChecked(event: Extract<CoordinatorEvent, { type: "state-checked" }>, now: number, effects: CoordinatorEffect[]): void {
    const round = this.current;
    if (event.attempt !== undefined) {
      const stage = round?.pipeline?.uploaders.indexOf(event.peerId) ?? -1;
      if (round === undefined || round.attempt !== event.attempt || (round.uploader !== event.peerId && stage < 0)) return;
      if (event.problem !== undefined) {
        this.abort("check-failed", `the state ${event.peerId} uploaded for attempt ${event.attempt} failed the server's check: ${event.problem}`, now, effects);
        this.strike(event.peerId, `uploaded a state that failed the server's check (${event.problem})`, now, effects);
        return;
      }
      if (stage >= 0) round.pipeline?.checked.set(stage, event.hash);
      else round.verifiedHash = event.hash;
      this.uploaders.landed(round.round, event.peerId, now);
      this.tryCommit(round, now, effects);
      return;
    }
    const wanted = this.custody.lacking;
    if (event.problem === undefined) this.uploaders.landed(event.round, event.peerId, now);
    if (event.problem === undefined || wanted === undefined || wanted.round !== event.round) return;
    if (event.hash === wanted.hash) {
      // The committed bits themselves fail the check (every member agreed on them): the job diverged.
      this.custody.forget();
      this.finish(`the committed state of round ${event.round} fails the server's check: ${event.problem}`, now, effects);
      return;
    }
    this.strike(event.peerId, `uploaded a state for round ${event.round} that failed the server's check (${event.problem})`, now, effects);
    this.askNextUploader(now, effects);
  }

  private onTick(now: number, effects: CoordinatorEffect[]): void {
    const round = this.current;
    if (round !== undefined && now - round.openedAt > this.config.roundDeadlineMs) {
      const silent = [...round.members].filter((p) => !round.reports.has(p));
      // Everyone reported but the state of a plan of one never passed the server's check.
      const unchecked = round.pipeline === undefined ? [round.uploader] : round.pipeline.uploaders.filter((_, stage) => !round.pipeline?.checked.has(stage));
      const blamed = silent.length > 0 ? silent : unchecked;
      const why = silent.length > 0 ? `no report from ${silent.join(", ")}` : `no checked state from ${unchecked.join(", ")}`;
      this.abort("deadline", `deadline of ${this.config.roundDeadlineMs} ms passed; ${why}`, now, effects);
      for (const peer of blamed) this.knockBack(peer, `silent past the round deadline`, now, effects);
    }
    for (const accusation of this.accusations.expire(now)) {
      if (this.membership.get(accusation.accuser) === undefined || this.membership.get(accusation.suspect) === undefined) continue;
      this.strike(accusation.accuser, `nobody confirmed its accusation of ${accusation.suspect} within ${this.config.accusationWindowMs} ms`, now, effects);
    }
    if (this.custody.overdue(now, this.config.stateUploadTimeoutMs)) this.askNextUploader(now, effects);
    const stopDeadline = this.custody.stopDeadline;
    if (stopDeadline !== undefined && now >= stopDeadline) {
      effects.push({ type: "log", kind: "upload", text: `the final state of round ${this.committedRound} never reached the server; stopping the members anyway` });
      this.stopMembers(effects);
    }
    for (const audit of this.audits.expire(now)) {
      const seconds = (this.config.auditTimeoutMs ?? DEFAULT_AUDIT_TIMEOUT_MS) / 1000;
      this.auditFailed(audit, `no contribution uploaded within ${seconds} s`, undefined, now, effects);
    }
  }

  /**
   * Aborts the open round: leases back to the front of the queue, members ready again at once.
   * `cause` is the fixed category the server counts by; `reason` the words members and the log see.
   */
  private abort(cause: AbortCause, reason: string, now: number, effects: CoordinatorEffect[]): void {
    const round = this.current;
    if (round === undefined) return;
    this.current = undefined;
    this.sampler.giveBackAll([...round.next.values()]);
    this.boundSpeeds(round, now);
    this.keepLeases(round, now);
    effects.push({ type: "log", kind: "aborted", text: `round ${round.round} (attempt ${round.attempt}) aborted: ${reason}` });
    effects.push({ type: "aborted", round: round.round, attempt: round.attempt, cause });
    for (const peer of round.members) {
      const member = this.membership.get(peer);
      if (member === undefined) continue;
      this.send(peer, { type: "abort", attempt: round.attempt, reason }, effects);
      // Members restore their committed state on abort, so they are ready again at once.
      if (member.state === "training") member.state = "ready";
    }
    this.replanAt = Math.max(this.replanAt, now + this.config.replanDelayMs);
  }

  /**
   * Members still computing when an attempt aborts compute slower than lease / time so far: an
   * estimate above that bound comes down to it, so the next split gives them less (a volunteer that
   * slowed down would otherwise keep a lease it cannot finish in time, round after round).
   */
  private boundSpeeds(round: OpenRound, now: number): void {
    for (const peer of round.plan.members) {
      if (round.reducingAt.has(peer)) continue;
      const member = this.membership.get(peer);
      const lease = round.leases.get(peer)?.length ?? 0;
      const elapsed = now - (round.startedAt.get(peer) ?? round.openedAt);
      if (member === undefined || lease === 0 || elapsed <= 0) continue;
      const bound = leaseSpeed(lease, elapsed);
      // Only an estimate comes down: a member never measured gets its first one, exact, at a commit
      // (a bound there would be blended into it and overstate its speed).
      if (member.samplesPerSecond !== undefined && member.samplesPerSecond > bound) member.samplesPerSecond = bound;
    }
  }

  /**
   * An aborted attempt's leases: kept for the members that come back ready (RetainedLeases), with
   * how long each took to reach its all-reduce, so its speed is measured on its compute alone; the
   * rest go back to the front of the queue. A pipeline attempt's stages recompute: all go back.
   */
  private keepLeases(round: OpenRound, now: number): void {
    const kept = new Map<string, Kept>();
    const back: (readonly number[])[] = [];
    for (const peer of round.plan.members) {
      const lease = round.leases.get(peer);
      if (lease === undefined) continue;
      if (round.pipeline !== undefined || this.membership.get(peer) === undefined || lease.length === 0) {
        back.push(lease);
        continue;
      }
      const startedAt = round.startedAt.get(peer) ?? round.openedAt;
      const reducingAt = round.reducingAt.get(peer);
      kept.set(peer, { lease, startedAt, computeMs: reducingAt === undefined ? undefined : Math.max(0, Math.min(reducingAt, now) - startedAt) });
    }
    this.sampler.giveBackAll(back);
    this.retained.keep(this.committedRound, kept);
  }

  private strike(peerId: string, why: string, now: number, effects: CoordinatorEffect[]): void {
    const member = this.membership.get(peerId);
    if (member === undefined) return;
    const outcome = this.membership.strike(member);
    effects.push({ type: "log", kind: "strike", text: `${peerId} struck (${outcome.strikes}/${this.config.maxStrikes}): ${why}` });
    if (outcome.evicted) this.evict(peerId, `evicted after ${outcome.strikes} strikes; last: ${why}`, now, effects);
  }

  /** Removes the member for good: it is told why, its connection closed, its address banned. */
  private evict(peerId: string, reason: string, now: number, effects: CoordinatorEffect[]): void {
    const member = this.membership.remove(peerId);
    this.uploaders.forget(peerId);
    if (member === undefined) return;
    this.send(peerId, { type: "stop", reason }, effects);
    effects.push({ type: "log", kind: "evicted", text: `${peerId} ${reason}` });
    effects.push({ type: "departed", member, reason });
    effects.push({ type: "disconnect", peerId, reason });
    this.afterDeparture(peerId, `${peerId} was evicted`, now, effects);
  }

  /**
   * A member at fault in a way that may mean it is stuck (silent, or named by two witnesses): struck,
   * and left out of the next plans until it fetched the committed state again and said so.
   */
  private knockBack(peerId: string, why: string, now: number, effects: CoordinatorEffect[]): void {
    const member = this.membership.get(peerId);
    if (member === undefined) return;
    // It may already sit in the next plan (opened before the second witness spoke): that one would fail too.
    if (this.current?.members.has(peerId)) this.abort("suspected", `${peerId} is suspected: ${why}`, now, effects);
    this.askToSync(member, now, effects, false);
    this.strike(peerId, why, now, effects);
  }

  /** Asks the next member holding the committed state to upload it, since the server still lacks it. */
  private askNextUploader(now: number, effects: CoordinatorEffect[]): void {
    const wanted = this.custody.lacking;
    if (wanted === undefined) return;
    // A pipeline stage's member holds only its layers: it cannot send the whole state.
    const holders = [...this.membership.values()].filter((m) => m.holds === wanted.round && m.lastHash === wanted.hash && m.stage === undefined).map((m) => m.peerId);
    const next = this.custody.askNext(holders, now);
    if (next === undefined) {
      // Nobody holds it any more: waiting cannot bring it.
      this.stopMembers(effects);
      return;
    }
    effects.push({ type: "log", kind: "upload", text: `asked ${next} for the state of round ${wanted.round}` });
    this.send(next, { type: "upload", round: wanted.round }, effects);
  }

  private maybeOpenRound(now: number, effects: CoordinatorEffect[]): void {
    if (this.current !== undefined || this.status === "paused" || this.status === "done" || now < this.replanAt) return;
    const ready = this.membership.readyTrainers(this.committedRound);
    const needed = this.status === "waiting" ? this.config.minWorkers : 1;
    if (ready.length < needed || ready.length === 0) return;
    // Hold the round briefly for members fetching the state (joiners), so they enter at the next round.
    if (this.status === "running" && this.membership.anySyncingWithin(now, this.config.joinGraceMs)) return;
    if (this.nextAttempt > MAX_ATTEMPT) {
      this.finish(`attempt ids are exhausted (${MAX_ATTEMPT})`, now, effects);
      return;
    }
    // Taken only now that a round opens: until then a snapshot counts the leases ahead in flight.
    const ahead = this.ahead.take(this.committedRound, ready.map((m) => m.peerId), (leases) => this.sampler.giveBackAll(leases));
    const kept = this.retained.take(this.committedRound, ready.map((m) => m.peerId), (leases) => this.sampler.giveBackAll(leases));
    const carried: ReadonlyMap<string, readonly number[]> = ahead?.leases ?? new Map([...(kept ?? [])].map(([peer, k]) => [peer, k.lease]));
    // When each began on its carried lease: a kept lease's compute ended before this attempt, so its
    // speed is measured as if it began computeMs before now (or when it began, if it never reported).
    const carriedSince = (peer: string): number => {
      const k = kept?.get(peer);
      if (k !== undefined) return k.computeMs === undefined ? k.startedAt : now - k.computeMs;
      return ahead?.since.get(peer) ?? now;
    };
    if (this.sampler.waiting === 0 && carried.size === 0) {
      this.finishEpoch(now, effects);
      // finishEpoch may finish the job (epoch limit), which TS cannot see through the call.
      if ((this.status as CoordinatorStatus) === "done") return;
    }
    this.status = "running";
    if (this.config.pipeline !== undefined) {
      this.openPipelineRound(this.config.pipeline, ready, now, effects);
      return;
    }
    // Members holding leases ahead compute them already (all of them, or none: see LeasesAhead), and
    // members keeping theirs from an aborted attempt computed them already (RetainedLeases).
    const batch = carried.size > 0 ? [] : this.sampler.take(this.config.batchSize);
    // A member with nothing to compute has nothing to contribute (a worker refuses an empty batch),
    // so it sits this round out: at the end of an epoch that holds fewer samples than there are
    // members, and in a round of carried leases, a member without one (a joiner after an abort: it
    // used to get an empty lease here, and its tab stopped on "empty batch"). It joins the next
    // round, after a sync to the round it missed.
    const taking = carried.size > 0 ? ready.filter((m) => carried.has(m.peerId)) : ready.slice(0, Math.max(1, batch.length));
    const order = separateAccused(
      taking.map((m) => m.peerId),
      (suspect) => this.accusations.accuserOf(suspect),
    );
    const speedOf = (peer: string): number | undefined => this.membership.get(peer)?.samplesPerSecond;
    const leases = splitBatch(batch, order.filter((peer) => !carried.has(peer)), speedOf);
    const startedAt = new Map<string, number>();
    for (const peer of order) {
      const lease = carried.get(peer);
      if (lease === undefined) continue;
      leases.set(peer, [...lease]);
      startedAt.set(peer, carriedSince(peer));
    }
    const uploader = this.uploaders.choose(this.committedRound + 1, order);
    const round: OpenRound = {
      attempt: this.nextAttempt++,
      round: this.committedRound + 1,
      epoch: this.sampler.epoch,
      plan: buildPlan(order, this.planSettings()),
      members: new Set(order),
      leases,
      reports: new Map(),
      reducingAt: new Map(),
      openedAt: now,
      uploader,
      verifiedHash: undefined,
      digests: new Map(),
      startedAt,
      next: this.leasesAhead(order, this.committedRound + 1, speedOf),
      reportedAt: new Map(),
    };
    this.begin(round);
    for (const member of taking) {
      member.state = "training";
      const lease = leases.get(member.peerId) ?? [];
      member.lastLease = lease.length;
      this.send(member.peerId, {
        type: "round",
        attempt: round.attempt,
        round: round.round,
        epoch: round.epoch,
        plan: round.plan,
        lease,
        ...(round.next.has(member.peerId) ? { next: [...(round.next.get(member.peerId) as readonly number[])] } : {}),
        frameBytes: this.config.frameBytes,
        upload: member.peerId === uploader,
      }, effects);
    }
  }

  private begin(round: OpenRound): void {
    this.current = round;
    this.recent.set(round.attempt, round.members);
    if (this.recent.size > RECENT_ATTEMPTS) this.recent.delete(this.recent.keys().next().value as number);
  }

  /**
   * A pipeline round: R replicas × K stages from the job's planner, each member on the stage whose
   * layers it holds (keepStages; one placed elsewhere fetches the whole state first), the batch
   * shared by the replicas. Every member of a replica gets the replica's lease (the first stage
   * reads its inputs, the last its labels) and its stage's ring as its all-reduce plan; replica 0's
   * members upload their stages' pending states.
   */
  private openPipelineRound(pipeline: PipelineCoordination, ready: readonly Member[], now: number, effects: CoordinatorEffect[]): void {
    const planned = pipeline.plan(ready.map((m) => ({ id: m.peerId, ...(m.memoryMiB === undefined ? {} : { memoryBytes: m.memoryMiB * 2 ** 20 }) })));
    if (!planned.ok) {
      if (this.planProblem !== planned.reason) effects.push({ type: "log", kind: "plan", text: `no pipeline plan from ${ready.length} ready members: ${planned.reason}` });
      this.planProblem = planned.reason;
      return;
    }
    this.planProblem = undefined;
    const kept = keepStages(planned.plan, (peer) => this.membership.get(peer)?.stage);
    if (kept.mustSync.length > 0) {
      effects.push({ type: "log", kind: "plan", text: `${kept.mustSync.join(", ")} move to other stages: fetching the committed state first` });
      for (const peer of kept.mustSync) {
        const member = this.membership.get(peer);
        if (member !== undefined) this.askToSync(member, now, effects);
      }
      return;
    }
    const { plan, leases } = shareBatch(kept.plan, this.sampler.take(this.config.batchSize));
    const stagePlans: Plan[] = plan.stages.map((_, stage) => buildPlan(stageMembers(plan, stage), this.planSettings()));
    const members = plan.replicas.flat();
    const uploaders = [...(plan.replicas[0] as string[])];
    const round: OpenRound = {
      attempt: this.nextAttempt++,
      round: this.committedRound + 1,
      epoch: this.sampler.epoch,
      plan: { kind: "ring", members },
      members: new Set(members),
      leases: new Map(plan.replicas.map((row, replica) => [row[0] as string, leases[replica] as number[]])),
      reports: new Map(),
      reducingAt: new Map(),
      openedAt: now,
      uploader: uploaders[0] as string,
      verifiedHash: undefined,
      digests: new Map(),
      startedAt: new Map(),
      next: new Map(),
      reportedAt: new Map(),
      pipeline: { plan, leases, stagePlans, uploaders, checked: new Map() },
    };
    this.begin(round);
    for (const [replica, row] of plan.replicas.entries()) {
      const lease = leases[replica] as number[];
      for (const [stage, peer] of row.entries()) {
        const member = this.membership.get(peer);
        if (member === undefined) continue;
        member.state = "training";
        member.lastLease = lease.length;
        this.send(peer, { type: "round", attempt: round.attempt, round: round.round, epoch: round.epoch, plan: stagePlans[stage] as Plan, lease: [...lease], frameBytes: this.config.frameBytes, upload: replica === 0, pipeline: plan }, effects);
      }
    }
  }

  private planSettings(): PlanSettings {
    return { aggregation: this.config.aggregation ?? "mean", codec: this.config.codec ?? "dense", topology: this.config.topology ?? "auto" };
  }

  /**
   * Leases of the round after `round`, split like this one's, for its members to compute while
   * they wait for this round's commit. None for the last round of the job or of the epoch.
   */
  private leasesAhead(order: readonly string[], round: number, speedOf: (peer: string) => number | undefined): Map<string, readonly number[]> {
    if (this.config.leaseAhead === false || this.sampler.waiting === 0) return new Map();
    if (this.maxRounds !== undefined && round >= this.maxRounds) return new Map();
    const leases = splitBatch(this.sampler.take(this.config.batchSize), order, speedOf);
    for (const [peer, lease] of leases) if (lease.length === 0) leases.delete(peer);
    return leases;
  }

  private finishEpoch(now: number, effects: CoordinatorEffect[]): void {
    const coverage = this.sampler.finishEpoch();
    effects.push({ type: "epoch-finished", coverage });
    effects.push({ type: "log", kind: "epoch", text: `epoch ${coverage.epoch} finished: ${coverage.usedOnce}/${coverage.samples} samples used exactly once` });
    if (this.config.maxEpochs !== undefined && this.sampler.epoch >= this.config.maxEpochs) this.finish(`reached ${this.config.maxEpochs} epochs`, now, effects);
  }

  private finish(reason: string, now: number, effects: CoordinatorEffect[]): void {
    if (this.status === "done") return;
    if (this.current !== undefined) this.abort("stopping", `stopping: ${reason}`, now, effects);
    this.status = "done";
    // Members stop soon and cannot answer: a finished job is not rolled back by its own shutdown.
    this.forgetDeparted(this.audits.dropAfter(-1));
    effects.push({ type: "log", kind: "done", text: `training finished: ${reason}` });
    // The members hold the final state the server may still lack (its upload can fail or be late):
    // they stop once it is stored, or once nobody is left to send it, or past a bounded wait.
    this.custody.finishing(reason, now + this.config.stateUploadTimeoutMs * FINAL_STATE_ASKS);
    if (this.custody.lacking === undefined) this.stopMembers(effects);
  }

  private stopMembers(effects: CoordinatorEffect[]): void {
    const reason = this.custody.takeStop();
    if (reason === undefined) return;
    for (const member of this.membership.values()) this.send(member.peerId, { type: "stop", reason }, effects);
  }

  /** The member holds a stale state: it fetches the committed one, and the next round waits for it briefly. */
  private askToSync(member: Member, now: number, effects: CoordinatorEffect[], grace = true): void {
    this.membership.startSync(member, now, grace);
    this.retained.release(member.peerId, (leases) => this.sampler.giveBackAll(leases));
    this.send(member.peerId, { type: "sync", round: this.committedRound }, effects);
  }

  private send(to: string, message: ResolvedCoordinatorMessage, effects: CoordinatorEffect[]): void {
    effects.push({ type: "send", to, message });
  }

  // ---- views: read-only snapshots, each O(members) at most ----

  /**
   * The members whose role is `role`, as they are now (not copies, unlike `state.members`): the
   * serving pool counts its servers 20 times a second, and copying all 1,000 members (and the open
   * round) each time was most of an idle server's CPU.
   */
  membersWithRole(role: MemberRole): readonly Readonly<Member>[] {
    return this.membership.withRole(role);
  }

  /** One member as it is now (not a copy), or undefined if it is not a member. */
  member(peerId: string): Readonly<Member> | undefined {
    return this.membership.get(peerId);
  }

  get state(): {
    status: CoordinatorStatus;
    maxRounds: number | undefined;
    committedRound: number;
    committedHash: string;
    epoch: number;
    current: OpenRoundView | undefined;
    members: Readonly<Member>[];
    epochProgress: { used: number; total: number };
    finishedEpochs: readonly EpochCoverage[];
  } {
    return {
      status: this.status,
      maxRounds: this.maxRounds,
      committedRound: this.committedRound,
      committedHash: this.committedHash,
      epoch: this.sampler.epoch,
      current: this.openRound,
      members: this.membership.rows(),
      epochProgress: this.sampler.progress(),
      finishedEpochs: [...this.sampler.finishedEpochs],
    };
  }

  /** The open round, as a copy (O(plan members)). */
  get openRound(): OpenRoundView | undefined {
    const round = this.current;
    if (round === undefined) return undefined;
    return {
      attempt: round.attempt,
      round: round.round,
      epoch: round.epoch,
      plan: round.plan,
      members: round.plan.members,
      leases: new Map(round.leases),
      reported: [...round.reports.keys()],
      openedAt: round.openedAt,
      uploader: round.uploader,
      verifiedHash: round.verifiedHash,
      ...(round.pipeline === undefined ? {} : { pipeline: round.pipeline.plan }),
    };
  }

  /** True while `peerId` is in the open round and said it entered the all-reduce (or reported). */
  isReducing(peerId: string): boolean {
    return this.current?.reducingAt.has(peerId) ?? false;
  }

  get openAttempt(): number | undefined {
    return this.current?.attempt;
  }

  get memberCount(): number {
    return this.membership.size;
  }

  /** Whether the job is over (cheap, unlike `state.status`: the server asks at every state upload). */
  get done(): boolean {
    return this.status === "done";
  }

  get committed(): { round: number; hash: string } {
    return { round: this.committedRound, hash: this.committedHash };
  }

  isMember(peerId: string): boolean {
    return this.membership.get(peerId) !== undefined;
  }

  /**
   * What `peerId` may upload now: the server accepts nothing else from it. Both can be open at
   * once (a round's uploader may still be sending the state of the round that just committed while
   * it is already the uploader of the next).
   */
  uploadSlots(peerId: string): UploadSlot[] {
    const slots: UploadSlot[] = [];
    const round = this.current;
    const stage = round?.pipeline?.uploaders.indexOf(peerId) ?? -1;
    const range = round?.pipeline?.plan.stages[stage];
    if (round !== undefined && range !== undefined) slots.push({ kind: "pending", round: round.round, attempt: round.attempt, stage: { index: stage, from: range.from, to: range.to } });
    else if (round?.uploader === peerId) slots.push({ kind: "pending", round: round.round, attempt: round.attempt });
    const wanted = this.custody.lacking;
    if (wanted !== undefined && this.custody.isAsked(peerId)) slots.push({ kind: "committed", round: wanted.round, hash: wanted.hash });
    return slots;
  }

  /** The spot check `peerId` may answer for `round` now (PUT /api/contribution/<round>), if any. */
  auditSlot(peerId: string, round: number): AuditSlot | undefined {
    const audit = this.audits.slot(peerId, round);
    if (audit?.digest === undefined) return undefined;
    return { round: audit.round, attempt: audit.attempt, lease: audit.lease, digest: audit.digest, baseRound: audit.round - 1 };
  }

  /** The earliest time a tick could change something (the server schedules one then). */
  nextWakeAt(): number | undefined {
    const times: number[] = [];
    if (this.current === undefined && this.replanAt > 0) times.push(this.replanAt);
    if (this.current === undefined) {
      const grace = this.membership.graceEndsAt(this.config.joinGraceMs);
      if (grace !== undefined) times.push(grace);
    }
    for (const expiry of [this.accusations.nextExpiryAt(), this.audits.nextExpiryAt(), this.custody.stopDeadline]) if (expiry !== undefined) times.push(expiry);
    return times.length === 0 ? undefined : Math.min(...times);
  }

  /** Uses of each sample in the current epoch (committed rounds only). */
  coverage(): Uint8Array {
    return this.sampler.coverage();
  }

  snapshot(): CoordinatorSnapshot {
    // An open round is not committed: its leases belong back in the queue.
    const open = this.current;
    const inFlight = [
      ...(open === undefined ? [] : open.plan.members.flatMap((p) => open.leases.get(p) ?? [])),
      ...(open === undefined ? [] : [...open.next.values()].flat()),
      ...this.ahead.inFlight(),
      ...this.retained.inFlight(),
    ];
    const sampler = this.sampler.snapshot(inFlight);
    return {
      committedRound: this.committedRound,
      committedHash: this.committedHash,
      epoch: sampler.epoch,
      queue: sampler.queue,
      uses: sampler.uses,
      nextAttempt: this.nextAttempt,
      finishedEpochs: sampler.finishedEpochs,
      status: this.status === "done" ? "done" : this.committedRound > 0 ? "running" : "waiting",
      maxRounds: this.maxRounds ?? null,
    };
  }
}

/** The samples `peer` computes in `round`: its own lease, or (a pipeline round) its replica's. */
function leaseOf(round: OpenRound, peer: string): readonly number[] | undefined {
  if (round.pipeline === undefined) return round.leases.get(peer);
  const position = pipelinePosition(round.pipeline.plan, peer);
  return position === undefined ? undefined : round.pipeline.leases[position.replica];
}
