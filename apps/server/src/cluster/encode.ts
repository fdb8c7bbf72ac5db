import type { CoordinatorMessage } from "@crowdtrain/protocol";

/**
 * Coordinator messages as JSON text. A round's plan is the same object in every member's round
 * message and lists every member, so with N members it is serialized once per round instead of N
 * times (measured with `npm run bench:load` at 1,000 workers: stringifying it per member was the
 * server's largest cost after the socket writes). Key order differs from JSON.stringify's; parsers
 * do not care.
 */
export class MessageEncoder {
  private readonly plans = new WeakMap<object, string>();

  encode(message: CoordinatorMessage): string {
    if (message.type !== "round") return JSON.stringify(message);
    const { plan, ...rest } = message;
    let planJson = this.plans.get(plan);
    if (planJson === undefined) {
      planJson = JSON.stringify(plan);
      this.plans.set(plan, planJson);
    }
    // `rest` always holds `type`, so its text is "{...}" with at least one key after the brace.
    return `{"plan":${planJson},${JSON.stringify(rest).slice(1)}`;
  }
}
