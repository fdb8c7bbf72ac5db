// bench:load's transport floor: the same crowd of N sockets, the same messages per round (sizes taken
// from the real run) and the same pacing, against floor-server.ts instead of Crowdtrain's server.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import WebSocket from "ws";
import { cpuMs, within } from "./process-figures.ts";

/** Sizes of the messages of one member's round, as the real run measured them. */
export type RoundSizes = { phaseBytes: number; resultBytes: number; commitBytes: number; roundBytes: number };
export type Pacing = { warmupRounds: number; rounds: number; minRoundMs: number; idleMs: number; joinBatch: number; timeoutMs: number };

/** From spawn to FLOOR_READY (tsx compiles on the way), and from the closed pipe to the exit. */
const FLOOR_READY_TIMEOUT_MS = 30_000;
const FLOOR_EXIT_TIMEOUT_MS = 5_000;

/** A JSON text of exactly `bytes` bytes (ASCII), distinct per `tag`: the stand-in for a message of that size, both ways. */
export const textOf = (bytes: number, tag: string): string => `"${tag.padEnd(bytes - 2, "x")}"`;

/** The floor server's CPU per round (its idle cost over the paced time taken out, as for the real server). */
export async function measureFloor(n: number, sizes: RoundSizes, pacing: Pacing): Promise<number> {
  const child = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "floor-server.ts"), String(sizes.commitBytes), String(sizes.roundBytes)], {
    stdio: ["pipe", "pipe", "inherit"],
  });
  // A child that could not be spawned emits "error" and may never emit "exit".
  const exited = new Promise<void>((done) => {
    child.once("exit", () => done());
    child.once("error", () => done());
  });
  const sockets: WebSocket[] = [];
  try {
    const port = await within(
      new Promise<number>((done, fail) => {
        createInterface({ input: child.stdout }).on("line", (line) => line.startsWith("FLOOR_READY ") && done(Number(line.split(" ")[1])));
        child.once("exit", (code) => fail(new Error(`the floor server exited (${code}) before it was ready`)));
        child.once("error", fail);
      }),
      FLOOR_READY_TIMEOUT_MS,
      "the floor server's start",
    );
    const pid = child.pid;
    if (pid === undefined) throw new Error("the floor server has no process id");
    let received = 0;
    let roundDone = (): void => undefined;
    const onMessage = (): void => {
      if (++received === 2 * n) roundDone();
    };
    for (let k = 0; k < n; k += pacing.joinBatch) {
      const batch = Array.from({ length: Math.min(pacing.joinBatch, n - k) }, () => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}`);
        sockets.push(ws);
        ws.on("message", onMessage);
        return new Promise<void>((done, fail) => {
          ws.once("open", () => done());
          ws.once("error", fail);
        });
      });
      await within(Promise.all(batch), pacing.timeoutMs, "joining the floor server");
    }
    const idleFrom = { cpu: cpuMs(pid), at: performance.now() };
    await new Promise((done) => setTimeout(done, pacing.idleMs));
    const idleCpuMsPerSecond = ((cpuMs(pid) - idleFrom.cpu) / (performance.now() - idleFrom.at)) * 1000;
    let cpuAtStart = 0;
    let pacedMs = 0;
    for (let r = 0; r < pacing.warmupRounds + pacing.rounds; r++) {
      if (r === pacing.warmupRounds) cpuAtStart = cpuMs(pid);
      const roundStarted = performance.now();
      received = 0;
      const answered = new Promise<void>((done) => (roundDone = done));
      for (const ws of sockets) {
        ws.send(textOf(sizes.phaseBytes, `phase ${r}`));
        ws.send(textOf(sizes.resultBytes, `result ${r}`));
      }
      await within(answered, pacing.timeoutMs, `the floor server's answers to round ${r + 1}`);
      const pace = Math.max(0, pacing.minRoundMs - (performance.now() - roundStarted));
      if (r >= pacing.warmupRounds) pacedMs += pace;
      await new Promise((done) => setTimeout(done, pace));
    }
    return (cpuMs(pid) - cpuAtStart - (idleCpuMsPerSecond * pacedMs) / 1000) / pacing.rounds;
  } finally {
    for (const ws of sockets) ws.terminate();
    child.stdin.end();
    const timer = setTimeout(() => child.kill("SIGKILL"), FLOOR_EXIT_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  }
}
