// Load: 1,000 workers over real WebSockets on 127.0.0.1 join one server, are planned into one round,
// then all leave in the same tick. Throughout, a poller asks /api/status every 100 ms and every
// answer must come within 1 s; afterwards the server holds no member and no socket, and answers.
// The workers are light scripted clients (hello, ready, then silence): parsing a 1,000-member plan
// in each of them would load this shared event loop with client work and blur what the server costs.
import { parseCoordinatorMessage, parseJob, PROTOCOL_VERSION } from "@crowdtrain/protocol";
import { decodeState } from "@crowdtrain/training";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import type { ServerHandle } from "../../src/server.ts";
import { buildDatasets, expectAlive, maxEventLoopStall, request, Servers, sleep, smallJob, until, withTimeout, wsUrl } from "./support.ts";

const WORKERS = 1_000;
/** Workers opening their sockets at once. */
const JOIN_BATCH = 100;
/** The poller's period and the bound on every answer it gets. */
const POLL_EVERY_MS = 100;
const STATUS_BOUND_MS = 1_000;
/** Bounds of each phase, so a stuck server fails the test instead of hanging it. */
const JOIN_TIMEOUT_MS = 30_000;
const ROUND_TIMEOUT_MS = 20_000;
const IDLE_TIMEOUT_MS = 20_000;
const TEST_TIMEOUT_MS = 90_000;

let datasets: Awaited<ReturnType<typeof buildDatasets>>;
const servers = new Servers(() => datasets.dir);
const sockets: WebSocket[] = [];

beforeAll(async () => {
  datasets = await buildDatasets();
}, 120_000);

afterAll(async () => {
  for (const ws of sockets.splice(0)) ws.terminate();
  await servers.closeAll();
  datasets?.remove();
});

/** Opens a socket, says hello and resolves once welcomed; counts what arrives after. */
function join(url: string, counts: { messages: number }): Promise<WebSocket> {
  return withTimeout(
    new Promise<WebSocket>((done, fail) => {
      const ws = new WebSocket(wsUrl(url, "/ws"));
      sockets.push(ws);
      let welcomed = false;
      ws.on("open", () => ws.send(JSON.stringify({ type: "hello", protocol: PROTOCOL_VERSION, backend: "cpu" })));
      ws.on("message", (data: Buffer) => {
        if (welcomed) {
          counts.messages++;
          return;
        }
        const message = parseCoordinatorMessage(data.toString());
        if (message.type !== "welcome") return fail(new Error(`expected welcome, got ${message.type}`));
        welcomed = true;
        done(ws);
      });
      ws.on("close", (code, reason) => {
        if (!welcomed) fail(new Error(`closed before the welcome: ${code} ${reason.toString()}`));
      });
      ws.on("error", fail);
    }),
    JOIN_TIMEOUT_MS,
    "a worker's join",
  );
}

/** Asks /api/status every POLL_EVERY_MS; records the slowest answer of each phase. */
function startPoller(url: string): { phase(name: string): void; stop(): Promise<Record<string, number>> } {
  const worst: Record<string, number> = {};
  let phase = "joining";
  let running = true;
  const loop = (async () => {
    while (running) {
      const started = performance.now();
      const startPhase = phase;
      const answer = await request(`${url}/api/status`, {}, 10_000);
      if (answer.status !== 200) throw new Error(`/api/status answered ${answer.status}`);
      const ms = performance.now() - started;
      // A request spanning two phases counts for both.
      for (const p of new Set([startPhase, phase])) worst[p] = Math.max(worst[p] ?? 0, ms);
      await sleep(Math.max(0, POLL_EVERY_MS - ms));
    }
  })();
  return {
    phase(name) {
      phase = name;
    },
    async stop() {
      running = false;
      await loop;
      return worst;
    },
  };
}

describe("1,000 workers on one server", () => {
  it(
    "join, are planned into one round, and leave at once: /api/status answers within 1 s throughout, and the server ends idle",
    async () => {
      const job = parseJob({ ...smallJob, batchSize: 1_000 });
      const server: ServerHandle = await servers.start({ job, minWorkers: WORKERS, maxMembers: 2_000, hellosPerSecond: 100_000, heartbeatTimeoutMs: 60_000 });
      const rssStart = process.memoryUsage().rss;
      const poller = startPoller(server.url);
      let poll: Record<string, number> = {};
      try {
        const counts = { messages: 0 };
        const started = performance.now();
        const crowd: WebSocket[] = [];
        for (let k = 0; k < WORKERS; k += JOIN_BATCH) {
          crowd.push(...(await Promise.all(Array.from({ length: Math.min(JOIN_BATCH, WORKERS - k) }, () => join(server.url, counts)))));
        }
        const joinedMs = performance.now() - started;
        expect(server.training!.hub.coordinator.memberCount).toBe(WORKERS);

        poller.phase("round opening");
        const state = decodeState(new Uint8Array(await (await fetch(`${server.url}/api/state`, { signal: AbortSignal.timeout(5_000) })).arrayBuffer()));
        for (const ws of crowd) ws.send(JSON.stringify({ type: "ready", round: 0, hash: state.hash }));
        await until(() => server.training!.hub.coordinator.openRound?.members.length === WORKERS, `a round of ${WORKERS}`, ROUND_TIMEOUT_MS, 50);
        await until(() => counts.messages >= WORKERS, "every worker's round message", ROUND_TIMEOUT_MS, 50);

        poller.phase("mass departure");
        const departed = performance.now();
        let terminateMs = 0;
        const { stallMs } = await maxEventLoopStall(async () => {
          for (const ws of crowd) ws.terminate();
          terminateMs = performance.now() - departed;
          await until(
            () => server.training!.hub.coordinator.memberCount === 0 && server.training!.hub.connections === 0,
            "no member and no socket left",
            IDLE_TIMEOUT_MS,
            5,
          );
        });
        const idleMs = performance.now() - departed;
        poller.phase("after");
        await sleep(3 * POLL_EVERY_MS);
        poll = await poller.stop();

        const status = await expectAlive(server.url);
        expect(status.peers.filter((p) => p.state !== "gone")).toEqual([]);
        expect(status.openRound).toBeUndefined();
        expect((await request(`${server.url}/api/health`)).status).toBe(200);
        const rssGrowth = (process.memoryUsage().rss - rssStart) / 2 ** 20;
        console.log(
          `[load] ${WORKERS} workers joined in ${joinedMs.toFixed(0)} ms; mass departure to idle ${idleMs.toFixed(0)} ms ` +
            `(the clients' own terminate() loop ${terminateMs.toFixed(0)} ms, longest event-loop stall ${stallMs.toFixed(0)} ms); ` +
            `slowest /api/status by phase ${JSON.stringify(Object.fromEntries(Object.entries(poll).map(([k, v]) => [k, Math.round(v)])))} ms; RSS +${rssGrowth.toFixed(0)} MiB`,
        );
        for (const [phase, ms] of Object.entries(poll)) expect(ms, `slowest /api/status while ${phase}`).toBeLessThan(STATUS_BOUND_MS);
      } finally {
        if (Object.keys(poll).length === 0) await poller.stop().catch(() => undefined);
      }
    },
    TEST_TIMEOUT_MS,
  );
});
