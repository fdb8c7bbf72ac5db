import { decodeActivationFrame, FrameDecodeError, type ActivationDirection } from "@crowdtrain/protocol";
import { ActivationAssembler, ActivationViolation } from "./assembler.ts";

/**
 * A stage's incoming activations for one round: frames from the stage before (forward) and the
 * stage after (backward), decoded, checked and assembled, handed out by micro-batch. Frames may
 * arrive before the stage asks for them (a fast neighbour): whole tensors wait here until taken.
 *
 * Every wait has a named timeout, ACTIVATION_WAIT_MS by default: a neighbour that goes silent fails
 * the round with a PipelineTimeout naming it, and the coordinator aborts and re-plans the round.
 */
export const ACTIVATION_WAIT_MS = 30_000;

export class PipelineTimeout extends Error {
  override name = "PipelineTimeout";
  constructor(readonly peer: string, readonly what: string, readonly timeoutMs: number) {
    super(`no ${what} from ${peer} within ${timeoutMs} ms`);
  }
}

/** A neighbour's link closed mid-round: the round cannot finish, so it fails at once rather than at the timeout. */
export class NeighbourGone extends Error {
  override name = "NeighbourGone";
  constructor(readonly peer: string, readonly reason: string) {
    super(`neighbour ${peer} is gone: ${reason}`);
  }
}

export interface Neighbour {
  readonly id: string;
  readonly stage: number;
}

export interface InboxOptions {
  readonly attempt: number;
  readonly micros: number;
  /** The stage before (sends forward activations); undefined for the first stage. */
  readonly previous: Neighbour | undefined;
  /** The stage after (sends backward gradients); undefined for the last stage. */
  readonly next: Neighbour | undefined;
  /** Whole shape of micro-batch m's forward input (= the previous stage's output). */
  readonly inputShapeOf: (micro: number) => readonly number[];
  /** Whole shape of micro-batch m's output (= the gradient the next stage sends back). */
  readonly outputShapeOf: (micro: number) => readonly number[];
  readonly timeoutMs?: number;
  readonly setTimer?: (fn: () => void, ms: number) => unknown;
  readonly clearTimer?: (handle: unknown) => void;
}

type Waiter = { resolve: (values: Float32Array) => void; reject: (error: unknown) => void; timer: unknown };

export class StageInbox {
  private readonly assemblers = new Map<ActivationDirection, { from: Neighbour; assembler: ActivationAssembler }>();
  private readonly ready = new Map<string, Float32Array>();
  private readonly waiters = new Map<string, Waiter>();
  private failure: unknown;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;

  constructor(private readonly options: InboxOptions) {
    this.setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = options.clearTimer ?? ((handle) => clearTimeout(handle as ReturnType<typeof setTimeout>));
    const { attempt, micros } = options;
    if (options.previous !== undefined) {
      const from = options.previous;
      this.assemblers.set("forward", { from, assembler: new ActivationAssembler({ sender: from.id, attempt, direction: "forward", fromStage: from.stage, micros, shapeOf: options.inputShapeOf }) });
    }
    if (options.next !== undefined) {
      const from = options.next;
      this.assemblers.set("backward", { from, assembler: new ActivationAssembler({ sender: from.id, attempt, direction: "backward", fromStage: from.stage, micros, shapeOf: options.outputShapeOf }) });
    }
  }

  /**
   * One frame from `sender`. A frame that is not the protocol's, from a peer that is not the
   * neighbour for its direction, or wrong for the round, is an ActivationViolation naming the
   * sender: it is thrown to the caller and also fails the round's waits.
   */
  deliver(sender: string, bytes: Uint8Array): void {
    if (this.failure !== undefined) return;
    try {
      let frame;
      try {
        frame = decodeActivationFrame(bytes);
      } catch (error) {
        if (error instanceof FrameDecodeError) throw new ActivationViolation(sender, `undecodable activation frame: ${error.message}`);
        throw error;
      }
      const route = this.assemblers.get(frame.direction);
      if (route === undefined || route.from.id !== sender) throw new ActivationViolation(sender, `sent ${frame.direction} activations, but is not this stage's neighbour for them`);
      const whole = route.assembler.accept(frame);
      if (whole !== undefined) this.settle(key(frame.direction, whole.micro), whole.values);
    } catch (error) {
      this.fail(error);
      throw error;
    }
  }

  /** Micro-batch `micro`'s whole tensor in `direction`, once it has arrived. */
  take(direction: ActivationDirection, micro: number): Promise<Float32Array> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const route = this.assemblers.get(direction);
    if (route === undefined) return Promise.reject(new Error(`this stage receives no ${direction} activations`));
    const k = key(direction, micro);
    const values = this.ready.get(k);
    if (values !== undefined) {
      this.ready.delete(k);
      return Promise.resolve(values);
    }
    if (this.waiters.has(k)) return Promise.reject(new Error(`${direction} activations of micro-batch ${micro} are already awaited`));
    const timeoutMs = this.options.timeoutMs ?? ACTIVATION_WAIT_MS;
    return new Promise((resolve, reject) => {
      const timer = this.setTimer(() => {
        this.waiters.delete(k);
        reject(new PipelineTimeout(route.from.id, `${direction} activations of micro-batch ${micro}`, timeoutMs));
      }, timeoutMs);
      this.waiters.set(k, { resolve, reject, timer });
    });
  }

  /**
   * The transport lost its link to `peer` (p2p onPeerGone). When that is a neighbour of this stage,
   * the round fails now with NeighbourGone naming it; another peer's loss is not this round's concern.
   */
  peerGone(peer: string, reason: string): void {
    if ([...this.assemblers.values()].some((route) => route.from.id === peer)) this.fail(new NeighbourGone(peer, reason));
  }

  /** Ends the round: every wait fails with `error`, buffered tensors are dropped, later frames ignored. */
  fail(error: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = error;
    this.ready.clear();
    for (const waiter of this.waiters.values()) {
      this.clearTimer(waiter.timer);
      waiter.reject(error);
    }
    this.waiters.clear();
  }

  private settle(k: string, values: Float32Array): void {
    const waiter = this.waiters.get(k);
    if (waiter === undefined) {
      this.ready.set(k, values);
      return;
    }
    this.waiters.delete(k);
    this.clearTimer(waiter.timer);
    waiter.resolve(values);
  }
}

const key = (direction: ActivationDirection, micro: number): string => `${direction}:${micro}`;
