// A dishonest volunteer for robustness tests and benchmarks: the real session, trainer and peer
// link, with one attack applied to what this tab contributes. Lab-only: the product page never
// imports this file, and the lab page is served only by a server started with --lab.
import { AllReduceError } from "@crowdtrain/allreduce";
import type { PeerLink } from "../session/session.ts";
import type { GradientReport, Trainer } from "../trainer/api.ts";
import { startVolunteer, type Volunteer } from "../volunteer.ts";
import type { LabAttack } from "../lab-api.ts";
import { overrideTrainer } from "./override-trainer.ts";

let running: Volunteer | undefined;

/** What a dishonest tab does to its gradient before the all-reduce sees it. */
export function attackGradient(attack: LabAttack, report: GradientReport, random: () => number = Math.random): GradientReport {
  const g = report.gradient;
  const out = new Float32Array(g.length);
  let norm = 0;
  for (const x of g) norm += x * x;
  norm = Math.sqrt(norm);
  switch (attack) {
    case "scale":
      for (let i = 0; i < g.length; i++) out[i] = (g[i] as number) * 1e4;
      break;
    case "sign-flip":
      for (let i = 0; i < g.length; i++) out[i] = -(g[i] as number);
      break;
    case "huge":
      out.fill(3e38);
      break;
    case "noise": {
      // Random noise of the gradient's own norm, replacing the gradient.
      let noiseNorm = 0;
      for (let i = 0; i < g.length; i++) noiseNorm += (out[i] = random() * 2 - 1) ** 2;
      const scale = norm / Math.max(Math.sqrt(noiseNorm), 1e-30);
      for (let i = 0; i < g.length; i++) out[i] = (out[i] as number) * scale;
      break;
    }
    case "zero":
      // A free rider: claims its lease, contributes nothing.
      break;
    case "claim":
      // An honest gradient, but a claimed sample count far above its lease (to buy weight in a mean).
      return { ...report, samples: 1e9 };
    case "wrong-hash":
    case "accuse":
      // Lie in what they report, not in what they send (see dishonest() and falseAccuser()).
      return report;
  }
  return { ...report, gradient: out };
}

/** The attacks target data-parallel rounds: a pipeline stage (computeStage) runs honestly. */
function dishonest(trainer: Trainer, attack: LabAttack): Trainer {
  return overrideTrainer(trainer, {
    computeGradient: async (lease, basis) => attackGradient(attack, await trainer.computeGradient(lease, basis)),
    applyUpdate: async (attempt, mean) => {
      const update = await trainer.applyUpdate(attempt, mean);
      return attack === "wrong-hash" ? { ...update, hash: "f".repeat(64) } : update;
    },
  });
}

/**
 * A false accuser: takes part in every all-reduce honestly, then reports that another member sent
 * it a bad frame (the member after it in the plan), which aborts the round. Nobody corroborates it.
 */
function falseAccuser(link: PeerLink, self: () => string | undefined): PeerLink {
  return {
    ...link,
    reduce: async (args) => {
      await link.reduce(args);
      const members = args.plan.members;
      const victim = members[(members.indexOf(self() ?? "") + 1) % members.length];
      throw new AllReduceError("bad-frame", args.attempt, victim, "a frame that did not decode (made up: a false accusation)");
    },
  };
}

/** Joins the job like a volunteer would, but applies `attack` to every gradient it contributes. */
export async function labDishonest(args: { attack: LabAttack; backends: string[]; name?: string }): Promise<void> {
  if (running !== undefined) throw new Error("a dishonest volunteer already runs on this page");
  running = await startVolunteer({
    backends: args.backends,
    forcePage: false,
    name: args.name ?? `dishonest-${args.attack}`,
    joinToken: undefined,
    onStatus: () => undefined,
    decorateTrainer: (trainer) => dishonest(trainer, args.attack),
    decorateLink: args.attack === "accuse" ? (link) => falseAccuser(link, () => running?.status().peerId) : undefined,
  });
}

/** The dishonest volunteer's session status (or undefined before labDishonest). */
export function labDishonestStatus(): { phase: string; peerId: string | undefined; stopReason: string | undefined } | undefined {
  if (running === undefined) return undefined;
  const status = running.status();
  return { phase: status.phase, peerId: status.peerId, stopReason: status.stopReason };
}
