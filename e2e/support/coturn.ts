// A coturn TURN server for the e2e tests, started inside the test's network namespace with the
// shared secret the Crowdtrain server mints credentials from (coturn's use-auth-secret scheme).
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

/** coturn starts in well under a second; its relay threads and DB take a little longer on 2 cores. */
const COTURN_READY_TIMEOUT_MS = 10_000;
/** One STUN binding request on the namespace's own address. */
const STUN_PROBE_TIMEOUT_MS = 500;
const COTURN_EXIT_TIMEOUT_MS = 5_000;

export type Coturn = {
  /** turn:ADDRESS:PORT?transport=udp */
  url: string;
  secret: string;
  /** Every line coturn logged so far. */
  log(): readonly string[];
  stop(): Promise<void>;
};

export async function startCoturn(address: string, port: number): Promise<Coturn> {
  const secret = randomBytes(24).toString("hex");
  const dir = mkdtempSync(join(tmpdir(), "crowdtrain-coturn-"));
  // --verbose: coturn logs sessions (user, ALLOCATE, CHANNEL_BIND) only then; the test reads them.
  // prettier-ignore
  const child = spawn("turnserver", [
    "-n", "--verbose", "--no-cli", "--no-tls", "--no-dtls", "--simple-log", "--log-file=stdout",
    `--listening-ip=${address}`, `--relay-ip=${address}`, `--listening-port=${port}`, "--min-port=49152", "--max-port=49407",
    "--use-auth-secret", `--static-auth-secret=${secret}`, "--realm=crowdtrain.test",
    `--pidfile=${join(dir, "turnserver.pid")}`, `--userdb=${join(dir, "turndb")}`,
  ], { stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on("line", (line) => lines.push(line));
  const stop = async (): Promise<void> => {
    await stopChild(child);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntilAnswering(child, address, port, lines);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: `turn:${address}:${port}?transport=udp`, secret, log: () => lines, stop };
}

/** Polls with STUN binding requests until coturn answers one. */
async function waitUntilAnswering(child: ChildProcess, address: string, port: number, lines: readonly string[]): Promise<void> {
  const deadline = Date.now() + COTURN_READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`turnserver exited (${child.exitCode}) before it answered:\n${lines.join("\n")}`);
    if (await stunAnswers(address, port)) return;
  }
  throw new Error(`turnserver did not answer STUN on ${address}:${port} within ${COTURN_READY_TIMEOUT_MS} ms:\n${lines.join("\n")}`);
}

function stunAnswers(address: string, port: number): Promise<boolean> {
  // Binding request: type 0x0001, length 0, the magic cookie, a 96-bit transaction id.
  const request = Buffer.concat([Buffer.from([0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42]), randomBytes(12)]);
  const socket = createSocket("udp4");
  return new Promise<boolean>((done) => {
    const finish = (answered: boolean): void => {
      clearTimeout(timer);
      socket.close();
      done(answered);
    };
    const timer = setTimeout(() => finish(false), STUN_PROBE_TIMEOUT_MS);
    socket.on("message", (reply) => finish(reply.readUInt16BE(0) === 0x0101 && reply.subarray(8, 20).equals(request.subarray(8, 20))));
    // Not listening yet (ICMP port unreachable) reads as "try again", like silence.
    socket.on("error", () => finish(false));
    socket.send(request, port, address);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  child.kill("SIGTERM");
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<"late">((done) => (timer = setTimeout(() => done("late"), COTURN_EXIT_TIMEOUT_MS)));
  if ((await Promise.race([exited, late])) === "late") {
    child.kill("SIGKILL");
    await exited;
  }
  clearTimeout(timer);
}
