import type { CoordinatorMessage, Plan } from "@crowdtrain/protocol";

/** A plan as sent: its text (serialized once for all members) and its number. */
type EncodedPlan = { json: string; id: number };

/**
 * Coordinator messages as JSON text, per recipient. A round's plan lists every member, so at N
 * members it is the bulk of every round message (29 KB per member at 1,000 workers, measured with
 * `npm run bench:load`): it is serialized once per round, not N times, and a recipient gets it in
 * full only when it differs from the last plan sent to that recipient; otherwise the message names
 * it by number (`planId`) and the worker uses the plan it kept (the protocol's OpenRoundSchema).
 *
 * A message without a plan is serialized once per object: the coordinator gives every member of a
 * commit the same object (and never changes a message once sent).
 *
 * Invariants: plan numbers only grow; an unchanged plan (same text) keeps its number from round to
 * round; a recipient is a connection, so a reconnected worker (a new recipient) gets the next plan in
 * full. Key order differs from JSON.stringify's; parsers do not care.
 */
export class MessageEncoder {
  /** Each plan object's encoding: the coordinator makes one plan object per round for all members. */
  private readonly plans = new WeakMap<Plan, EncodedPlan>();
  /** The plan encoded last: a new plan object with the same text keeps its number. */
  private latest: EncodedPlan | undefined;
  private nextId = 0;
  /** The plan number each recipient last received in full. */
  private readonly sentTo = new WeakMap<object, number>();

  /** Messages without a plan, by object: the coordinator sends one commit object to every member. */
  private readonly texts = new WeakMap<CoordinatorMessage, string>();

  encode(message: CoordinatorMessage, recipient: object): string {
    if (message.type !== "round" || message.plan === undefined) {
      let text = this.texts.get(message);
      if (text === undefined) {
        text = JSON.stringify(message);
        this.texts.set(message, text);
      }
      return text;
    }
    const { plan, planId: _ignored, ...rest } = message;
    const encoded = this.encodePlan(plan);
    // `rest` always holds `type`, so its text is "{...}" with at least one key after the brace.
    const tail = JSON.stringify(rest).slice(1);
    if (this.sentTo.get(recipient) === encoded.id) return `{"planId":${encoded.id},${tail}`;
    this.sentTo.set(recipient, encoded.id);
    return `{"planId":${encoded.id},"plan":${encoded.json},${tail}`;
  }

  private encodePlan(plan: Plan): EncodedPlan {
    const cached = this.plans.get(plan);
    if (cached !== undefined) return cached;
    const json = JSON.stringify(plan);
    const encoded = this.latest?.json === json ? this.latest : { json, id: this.nextId++ };
    this.plans.set(plan, encoded);
    this.latest = encoded;
    return encoded;
  }
}
