// A made-up but valid status of a swarm of `peers` workers, for unit tests and for looking at the
// dashboard with many peers (e2e/tests/dashboard.spec.ts serves it as a fake event stream).
import { parseJob, type AuditRecord, type PeerStatus, type Status } from "@crowdtrain/protocol";

const BACKENDS = ["webgpu", "webgl", "wasm", "cpu"] as const;
const NAMES = ["ada", "grace", "alan", "edsger", "barbara", "donald", "frances", "ken", "margaret", "tim", "radia", "leslie"];
const AUDIT_OUTCOMES: Pick<AuditRecord, "outcome" | "relativeError" | "detail">[] = [
  { outcome: "failed", relativeError: 0.031, detail: "gradient differs from the server's recomputation" },
  { outcome: "passed", relativeError: 1.2e-7, detail: "matches the server's recomputation" },
  { outcome: "inconclusive", detail: "the peer left before it sent its contribution" },
];

export function fakeStatus(peers: number, options: { rounds?: number; now?: number } = {}): Status {
  const now = options.now ?? 1_800_000_000_000;
  const rounds = options.rounds ?? 60;
  const ids = Array.from({ length: peers }, (_, i) => `${(0x1000 + i * 7919).toString(16)}-peer-${String(i).padStart(2, "0")}-f3a9c2`);
  const name = (i: number) => (i % 5 === 4 ? undefined : `${NAMES[i % NAMES.length]}${i >= NAMES.length ? `-${Math.floor(i / NAMES.length)}` : ""}${i === 1 ? " with a very long display name indeed" : ""}`);
  const rows: PeerStatus[] = ids.map((id, i) => ({
    id,
    name: name(i),
    backend: BACKENDS[i % BACKENDS.length] as PeerStatus["backend"],
    adapter: i % 4 === 0 ? "SwiftShader Device (Subzero)" : undefined,
    state: i === 2 ? "joining" : "training",
    samplesPerSecond: 40 + ((i * 37) % 90),
    share: 1 / Math.max(1, peers),
    lastRoundMs: 900 + ((i * 53) % 400),
    lastHash: "0123456789abcdef",
    bytesSent: 1_500_000 * rounds + i * 1000,
    bytesReceived: 1_500_000 * rounds + i * 900,
    // Peer 0 failed a spot check; peers 1, 4, 7... passed theirs; the rest were never checked.
    audits: i === 0 ? { passed: 3, failed: 1 } : i % 3 === 1 ? { passed: 2, failed: 0 } : undefined,
  }));
  rows.push({ ...(rows[0] as PeerStatus), id: "gone-peer-0001", name: "left early", state: "gone", leftAt: now - 30_000 });
  const recentRounds = Array.from({ length: Math.min(50, rounds) }, (_, k) => {
    const round = rounds - Math.min(50, rounds) + k + 1;
    return {
      round,
      epoch: 0,
      at: now - (rounds - round) * 1_200,
      loss: 2.3 * Math.exp(-round / 25) + 0.2,
      samples: 96,
      ringSize: peers,
      roundMs: 1_100 + (round % 7) * 40,
      computeMs: 600 + (round % 5) * 30,
      readbackMs: 20,
      allReduceMs: 300 + (round % 3) * 50,
      updateMs: 40,
      hash: "0123456789abcdef",
    };
  });
  return {
    now,
    job: parseJob({ name: "mnist-mlp", dataset: "mnist", model: { kind: "mlp", hidden: [128] }, optimizer: { kind: "adam", learningRate: 0.001 }, batchSize: 96, epochs: 2, evalEveryRounds: 10, targetAccuracy: 0.9 }),
    status: "running",
    minWorkers: 1,
    round: rounds,
    targetRounds: undefined,
    epoch: 0,
    samplesSeen: rounds * 96,
    epochProgress: { used: rounds * 96, total: 8_000 },
    coverage: [],
    ring: ids,
    openRound: { round: rounds + 1, attempt: rounds + 3, ring: ids, openedAt: now - 400 },
    lastRing: {
      round: rounds,
      ring: ids,
      links: ids.map((from, i) => ({ from, to: ids[(i + 1) % ids.length] as string, bytes: 1_500_000, ms: 200 + ((i * 97) % 700), bytesPerSecond: 1_500_000 / ((200 + ((i * 97) % 700)) / 1000) })),
    },
    peers: rows,
    loss: Array.from({ length: rounds }, (_, k) => [k + 1, 2.3 * Math.exp(-(k + 1) / 25) + 0.2 + 0.05 * Math.sin(k)] as [number, number]),
    accuracy: Array.from({ length: Math.floor(rounds / 10) }, (_, k) => ({ round: (k + 1) * 10, accuracy: 0.95 - 0.6 * Math.exp(-(k + 1) / 2), loss: 1, ms: 300 })),
    recentRounds,
    events: [
      { at: now - 60_000, kind: "joined", text: `${ids[0]} joined (webgpu)` },
      { at: now - 40_000, kind: "aborted", text: "round 12 (attempt 14) aborted: gone-peer-0001 left: connection to the server closed" },
      { at: now - 30_000, kind: "left", text: "gone-peer-0001 left: connection to the server closed" },
      { at: now - 5_000, kind: "eval", text: `round ${rounds}: test accuracy 88.1%` },
      ...(ids[0] === undefined
        ? []
        : [
            { at: now - 4_000, kind: "audit", text: `spot check of ${ids[0]} in round ${rounds - 2} FAILED: gradient differs from the server's recomputation` },
            { at: now - 3_900, kind: "rollback", text: `${ids[0]} failed a spot check: undid rounds ${rounds - 2}..${rounds}; round ${rounds} restarts from the state of round ${rounds - 3}` },
          ]),
    ],
    stateRound: rounds,
    audits: {
      tolerance: 1e-4,
      passed: 9,
      failed: 1,
      // Newest last, as the server sends them: peer 0's failure is the latest (one audit each for peers 0..2).
      recent: AUDIT_OUTCOMES.slice(0, peers).map((audit, i): AuditRecord => ({ ...audit, round: rounds - 2 - i, peer: ids[i] as string, at: now - 4_000 - i * 1_000 })).reverse(),
    },
  };
}

/**
 * A made-up serving pool for `status.serving`: `windows` windows of 5 s ending at `now`, a ramp of load the
 * pool grows to meet (one window without answered requests, so its latencies are absent), two tabs (one
 * dedicated, one moved from training and still loading) and two scale decisions, the latest in panic.
 */
export function fakeServing(now: number, windows = 12): NonNullable<Status["serving"]> {
  return {
    poolSize: 2,
    target: 3,
    minTabs: 1,
    maxTabs: 8,
    panic: true,
    queueDepth: 4,
    served: 1_234,
    errors: 7,
    tabs: [
      { id: "serve-tab-dedicated-0001", round: 57, outstanding: 3, capacityRps: 41.25, dedicated: true },
      { id: "serve-tab-moved-0002", outstanding: 0, dedicated: false },
    ],
    windows: Array.from({ length: windows }, (_, i) => {
      const answered = i !== 2;
      return {
        at: now - (windows - 1 - i) * 5_000,
        offeredRps: 2 * i,
        servedRps: answered ? 1.8 * i : 0,
        ...(answered ? { p50Ms: 20 + i, p95Ms: 40 + 2 * i, p99Ms: 80 + 3 * i } : {}),
        poolSize: Math.min(2, 1 + Math.floor(i / 6)),
        queueDepth: i % 4,
        errors: i === windows - 1 ? 3 : 0,
      };
    }),
    decisions: [
      { at: now - 30_000, from: 1, to: 2, panic: false, reason: "stable window: 6.0 req/s needs 2 tabs" },
      { at: now - 2_000, from: 2, to: 3, panic: true, reason: "panic: 22 req/s in the short window is twice the pool's capacity" },
    ],
  };
}
