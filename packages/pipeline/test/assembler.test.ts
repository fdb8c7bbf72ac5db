import { describe, expect, it } from "vitest";
import { decodeActivationFrame, encodeActivation, type ActivationFrame } from "@crowdtrain/protocol";
import { ActivationAssembler, ActivationViolation } from "../src/assembler.ts";

const SENDER = "w-prev";
const options = { sender: SENDER, attempt: 7, direction: "forward" as const, fromStage: 0, micros: 3, shapeOf: (m: number) => [2 + m, 3] };
const ramp = (n: number, from = 0): Float32Array => Float32Array.from({ length: n }, (_, i) => from + i);
/** Micro-batch m's frames, cut small so a tensor takes several. */
const framesOf = (micro: number, values = ramp((2 + micro) * 3), header: Partial<ActivationFrame> = {}): ActivationFrame[] =>
  encodeActivation({ direction: "forward", attempt: 7, micro, stage: 0, shape: [2 + micro, 3], ...header }, values, 32 + 4 * 4).map(decodeActivationFrame);

describe("ActivationAssembler", () => {
  it("hands out each micro-batch's whole tensor once its last frame arrives, in any order", () => {
    const assembler = new ActivationAssembler(options);
    const frames = framesOf(1, ramp(9, 100));
    expect(frames.length).toBe(3);
    expect(assembler.accept(frames[2]!)).toBeUndefined();
    expect(assembler.accept(frames[0]!)).toBeUndefined();
    const whole = assembler.accept(frames[1]!);
    expect(whole?.micro).toBe(1);
    expect(Array.from(whole!.values)).toEqual(Array.from(ramp(9, 100)));
    expect(assembler.completed).toBe(1);
  });

  it("refuses, naming the sender, each frame the round did not ask for", () => {
    const cases: [ActivationFrame, RegExp][] = [
      [framesOf(0, undefined, { attempt: 6 })[0]!, /attempt 6, but the round is attempt 7/],
      [framesOf(0, undefined, { direction: "backward" })[0]!, /expected forward activations/],
      [framesOf(0, undefined, { stage: 1 })[0]!, /carries stage 1, but the sender holds stage 0/],
      [{ ...framesOf(0)[0]!, micro: 3 }, /the round has 3 micro-batches/],
      [framesOf(0, ramp(9), { shape: [3, 3] })[0]!, /shape \[3, 3\], expected \[2, 3\]/],
      [framesOf(0, Float32Array.from([1, 2, 3, 4, Number.NaN, 6]))[1]!, /element 4 is NaN; activations must be finite/],
      [framesOf(0, Float32Array.from([1, Infinity, 3, 4, 5, 6]))[0]!, /element 1 is Infinity/],
    ];
    for (const [frame, reason] of cases) {
      const assembler = new ActivationAssembler(options);
      let caught: unknown;
      try {
        assembler.accept(frame);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(ActivationViolation);
      expect((caught as ActivationViolation).sender).toBe(SENDER);
      expect((caught as ActivationViolation).message).toMatch(reason);
    }
  });

  it("refuses a frame overlapping one already received, and any frame of a completed micro-batch", () => {
    const assembler = new ActivationAssembler(options);
    const [first, second] = framesOf(0);
    assembler.accept(first!);
    expect(() => assembler.accept(first!)).toThrow(/overlap \[0, 4\) already received/);
    expect(assembler.accept(second!)?.micro).toBe(0);
    expect(() => assembler.accept(second!)).toThrow(/already complete \(a duplicate frame\)/);
  });
});
