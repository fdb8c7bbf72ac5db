import { MessageError, type CoordinatorMessage } from "./messages.ts";
import type { Plan } from "./plan.ts";

/** A round message as sent: its plan in full, or only the plan's number. */
export type RoundMessage = Extract<CoordinatorMessage, { type: "round" }>;
/** A round message with its plan, whichever way it came. */
export type RoundWithPlan = RoundMessage & { plan: Plan };

/**
 * The receiving end of plan numbering (OpenRoundSchema's `plan` and `planId`), one per connection:
 * keeps the last plan received in full under its number, and gives it to the round messages that
 * name it by number only. Round messages must be resolved in the order received.
 */
export class PlanBook {
  private known: { id: number; plan: Plan } | undefined;

  /**
   * The message with its plan (any other message as it is); throws MessageError if it names a plan
   * this connection never received.
   */
  resolve(message: RoundMessage): RoundWithPlan;
  resolve(message: CoordinatorMessage): ResolvedCoordinatorMessage;
  resolve(message: CoordinatorMessage): ResolvedCoordinatorMessage {
    if (message.type !== "round") return message;
    const { plan, planId } = message;
    if (plan !== undefined) {
      if (planId !== undefined) this.known = { id: planId, plan };
      return { ...message, plan };
    }
    if (planId === undefined || this.known?.id !== planId) {
      throw new MessageError(`round attempt ${message.attempt} names plan ${planId ?? "(none)"}, which this connection never received in full`);
    }
    return { ...message, plan: this.known.plan };
  }

  /** A new connection: plan numbers start over. */
  forget(): void {
    this.known = undefined;
  }
}

/** A coordinator message as acted on: a round carries its plan (resolved by a PlanBook). */
export type ResolvedCoordinatorMessage = Exclude<CoordinatorMessage, { type: "round" }> | RoundWithPlan;
