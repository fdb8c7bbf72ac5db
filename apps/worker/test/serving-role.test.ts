import { describe, expect, it } from "vitest";
import { PROTOCOL_VERSION, type CoordinatorMessage, type Job } from "@crowdtrain/protocol";
import { SessionMachine, type SessionConfig } from "../src/session/machine.ts";
import type { Command } from "../src/session/tasks.ts";

const JOB = { name: "t", dataset: "mnist", model: { kind: "mlp", hidden: [4] }, optimizer: { kind: "sgd", learningRate: 0.1, momentum: 0 }, batchSize: 8, rounds: 10, evalEveryRounds: 10, seed: 1, aggregation: "mean", spotCheck: 0 } as Job;
const IDENTITY = { peerId: "w-a", sessionToken: "s".repeat(22), peerKey: "k".repeat(22), peerToken: "t".repeat(22) };
const HASH = "0".repeat(64);

/** A machine connected, welcomed and synced to round 0; `out` keeps every command since. */
function ready(config: Partial<SessionConfig> = {}): { machine: SessionMachine; out: Command[]; in(message: CoordinatorMessage): Command[] } {
  const machine = new SessionMachine({ backend: "cpu", ...config });
  const out: Command[] = [];
  const feed = (commands: Command[]): Command[] => {
    out.push(...commands);
    return commands;
  };
  feed(machine.handle({ type: "open", now: 0 }));
  const send = (message: CoordinatorMessage): Command[] => feed(machine.handle({ type: "message", data: JSON.stringify(message), now: 1 }));
  send({ type: "welcome", protocol: PROTOCOL_VERSION, identity: IDENTITY, job: JOB, round: 0 });
  feed(machine.handle({ type: "result", result: { kind: "synced", round: 0, hash: HASH }, now: 2 }));
  return { machine, out, in: send };
}

const kinds = (commands: Command[]): string[] => commands.filter((c) => c.type === "serve" || c.type === "stop-serving").map((c) => c.type);

describe("a session's role", () => {
  it("?role=server: says so in its hello and starts serving once it holds the model, never before", () => {
    const d = ready({ role: "server" });
    const hello = d.out.find((c) => c.type === "send" && c.message.type === "hello");
    expect(hello).toMatchObject({ message: { role: "server" } });
    const serveAt = d.out.findIndex((c) => c.type === "serve");
    const readyAt = d.out.findIndex((c) => c.type === "send" && c.message.type === "ready");
    expect(serveAt).toBeGreaterThan(readyAt);
    expect(d.out[serveAt]).toEqual({ type: "serve", identity: IDENTITY });
    expect(d.machine.status).toMatchObject({ role: "server", phase: "serving" });
  });

  it("a trainer's hello names no role; told role: server it serves, told role: trainer it stops and waits for its sync", () => {
    const d = ready();
    expect(d.out.find((c) => c.type === "send" && c.message.type === "hello")).not.toMatchObject({ message: { role: expect.anything() } });
    expect(kinds(d.out)).toEqual([]);
    expect(kinds(d.in({ type: "role", role: "server" }))).toEqual(["serve"]);
    expect(d.machine.status.phase).toBe("serving");
    // The same role again changes nothing.
    expect(kinds(d.in({ type: "role", role: "server" }))).toEqual([]);
    expect(kinds(d.in({ type: "role", role: "trainer" }))).toEqual(["stop-serving"]);
    expect(d.machine.status).toMatchObject({ role: "trainer", phase: "waiting" });
    expect(d.in({ type: "sync", round: 3 }).some((c) => c.type === "run" && c.task.kind === "sync")).toBe(true);
  });

  it("a dropped connection stops serving; the next welcome starts in the hello's role again", () => {
    const d = ready();
    d.in({ type: "role", role: "server" });
    const down = d.machine.handle({ type: "down", reason: "closed", retryInMs: 100, now: 3 });
    expect(kinds(down)).toEqual(["stop-serving"]);
    expect(d.machine.status.role).toBe("trainer");
  });
});
