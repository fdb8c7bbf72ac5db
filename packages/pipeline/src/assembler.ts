import { activationElements, type ActivationDirection, type ActivationFrame } from "@crowdtrain/protocol";

/**
 * Reassembles one neighbour's micro-batch tensors in one direction of one round from their
 * frames, and refuses any frame the round did not ask for. A stage never computes on a tensor that
 * is the wrong shape, of another round or micro-batch, partly overwritten, or not finite: a NaN
 * from a broken or dishonest neighbour would otherwise poison every later stage and, through the
 * all-reduce, every replica.
 */
export class ActivationViolation extends Error {
  override name = "ActivationViolation";
  constructor(
    /** The peer whose frame broke the rules: the coordinator's suspect. */
    readonly sender: string,
    readonly reason: string,
  ) {
    super(`${sender}: ${reason}`);
  }
}

export interface AssemblerOptions {
  /** The neighbour these frames must come from (named in violations). */
  readonly sender: string;
  readonly attempt: number;
  readonly direction: ActivationDirection;
  /** The stage the neighbour holds: every frame must carry it. */
  readonly fromStage: number;
  readonly micros: number;
  /** The whole shape micro-batch m must have (rows, then the per-sample shape). */
  readonly shapeOf: (micro: number) => readonly number[];
}

interface PartialTensor {
  readonly values: Float32Array;
  /** Element ranges received so far, [start, end). */
  readonly ranges: [number, number][];
  received: number;
}

export class ActivationAssembler {
  private readonly partial = new Map<number, PartialTensor>();
  private readonly done = new Set<number>();

  constructor(private readonly o: AssemblerOptions) {}

  /** Micro-batches whose whole tensor has been handed out. */
  get completed(): number {
    return this.done.size;
  }

  /** Takes one decoded frame: the whole tensor when it completes one, else undefined. Throws ActivationViolation. */
  accept(frame: ActivationFrame): { micro: number; values: Float32Array } | undefined {
    const o = this.o;
    const refuse = (reason: string): never => {
      throw new ActivationViolation(o.sender, `${frame.direction} frame of micro-batch ${frame.micro}: ${reason}`);
    };
    if (frame.attempt !== o.attempt) refuse(`attempt ${frame.attempt}, but the round is attempt ${o.attempt}`);
    if (frame.direction !== o.direction) refuse(`expected ${o.direction} activations from this neighbour`);
    if (frame.stage !== o.fromStage) refuse(`carries stage ${frame.stage}, but the sender holds stage ${o.fromStage}`);
    if (frame.micro >= o.micros) refuse(`the round has ${o.micros} micro-batches`);
    if (this.done.has(frame.micro)) refuse("the micro-batch is already complete (a duplicate frame)");
    const expected = o.shapeOf(frame.micro);
    if (frame.shape.length !== expected.length || frame.shape.some((dim, i) => dim !== expected[i])) refuse(`shape [${frame.shape.join(", ")}], expected [${expected.join(", ")}]`);
    for (let i = 0; i < frame.values.length; i++) {
      if (!Number.isFinite(frame.values[i])) refuse(`element ${frame.offset + i} is ${frame.values[i]}; activations must be finite`);
    }
    let entry = this.partial.get(frame.micro);
    if (entry === undefined) {
      entry = { values: new Float32Array(activationElements(expected)), ranges: [], received: 0 };
      this.partial.set(frame.micro, entry);
    }
    const start = frame.offset;
    const end = start + frame.values.length;
    if (end > entry.values.length) refuse(`elements [${start}, ${end}) lie outside the tensor of ${entry.values.length}`);
    const overlap = entry.ranges.find(([s, e]) => start < e && s < end);
    if (overlap !== undefined) refuse(`elements [${start}, ${end}) overlap [${overlap[0]}, ${overlap[1]}) already received`);
    entry.values.set(frame.values, start);
    entry.ranges.push([start, end]);
    entry.received += frame.values.length;
    if (entry.received < entry.values.length) return undefined;
    this.partial.delete(frame.micro);
    this.done.add(frame.micro);
    return { micro: frame.micro, values: entry.values };
  }
}
