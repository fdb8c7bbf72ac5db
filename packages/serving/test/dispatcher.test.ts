import { describe, expect, it } from "vitest";
import { mulberry32 } from "@crowdtrain/protocol";
import { DEFAULT_DISPATCHER_CONFIG, Dispatcher, type DispatcherConfig, type ServeRequest } from "../src/dispatcher.ts";

/** A request of `rows` rows that arrived at `arrivedAt`, due `deadline`. */
const req = (id: number, rows = 1, arrivedAt = 0, deadline = 60_000): ServeRequest => ({ id, rows, arrivedAt, deadline });

/** A dispatcher with loaded tabs `ids`, each taking `maxBatch` rows a batch. */
function withTabs(ids: readonly string[], maxBatch = 8, config: Partial<DispatcherConfig> = {}): Dispatcher {
  const d = new Dispatcher(config);
  for (const id of ids) {
    d.addTab(id, maxBatch, true);
    d.loaded(id, 1);
  }
  return d;
}

/** Assignments as "tab:id" strings, in the order assign returned them. */
const sent = (list: { tab: string; request: ServeRequest }[]): string[] => list.map(({ tab, request }) => `${tab}:${request.id}`);

const outstanding = (d: Dispatcher, tab: string): number | undefined => d.views().find((v) => v.id === tab)?.outstanding;

describe("Dispatcher construction", () => {
  it("accepts the defaults and refuses bad settings", () => {
    expect(() => new Dispatcher()).not.toThrow();
    expect(DEFAULT_DISPATCHER_CONFIG.outstandingBatches).toBeGreaterThanOrEqual(1);
    for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new Dispatcher({ maxPendingRows: bad }), `maxPendingRows ${bad}`).toThrow(RangeError);
      expect(() => new Dispatcher({ outstandingBatches: bad }), `outstandingBatches ${bad}`).toThrow(RangeError);
    }
    for (const bad of [0, -5, Number.NaN]) expect(() => new Dispatcher({ attemptTimeoutMs: bad }), `attemptTimeoutMs ${bad}`).toThrow(RangeError);
    expect(() => new Dispatcher({ maxPendingRows: 1, outstandingBatches: 1, attemptTimeoutMs: 0.5 })).not.toThrow();
  });

  it("refuses a tab added twice and a request submitted twice", () => {
    const d = withTabs(["a"]);
    expect(() => d.addTab("a", 4, false)).toThrow(RangeError);
    expect(d.submit(req(1))).toBe("queued");
    expect(() => d.submit(req(1))).toThrow(RangeError);
    expect(d.pending).toBe(1);
  });
});

describe("Dispatcher assignment", () => {
  it("gives nothing to a tab that has not loaded a model", () => {
    const d = new Dispatcher();
    d.addTab("a", 8, true);
    expect(d.hasTab("a")).toBe(true);
    expect(d.serving).toBe(0);
    d.submit(req(1));
    expect(d.assign(0)).toEqual([]);
    expect(d.queued).toBe(1);
    d.loaded("a", 3);
    expect(d.serving).toBe(1);
    expect(d.views()[0]?.round).toBe(3);
    expect(sent(d.assign(1))).toEqual(["a:1"]);
    expect(d.queued).toBe(0);
    expect(d.rowsHeld("a", 1)).toBe(1);
  });

  it("hands each request to the tab with the fewest rows held", () => {
    const d = withTabs(["a", "b"], 16);
    d.submit(req(1, 4));
    d.submit(req(2, 1));
    d.submit(req(3, 1));
    d.submit(req(4, 5));
    // 1 -> a (tie), 2 -> b (0 < 4), 3 -> b (1 < 4), 4 -> b (2 < 4).
    expect(sent(d.assign(0))).toEqual(["a:1", "b:2", "b:3", "b:4"]);
    expect(outstanding(d, "a")).toBe(1);
    expect(outstanding(d, "b")).toBe(3);
    expect(d.rowsHeld("b", 4)).toBe(5);
    expect(d.rowsHeld("a", 4)).toBeUndefined();
  });

  it("weighs rows held by each tab's measured capacity", () => {
    const d = withTabs(["fast", "slow"], 1_000);
    // fast: 100 rows in 1 s of busy time; slow: 10 rows in 1 s.
    d.submit(req(1, 100));
    d.submit(req(2, 10));
    expect(sent(d.assign(0))).toEqual(["fast:1", "slow:2"]);
    d.reply("fast", 1, 1_000);
    d.reply("slow", 2, 1_000);
    expect(d.measure(1_000)).toBeCloseTo(55, 6);
    // fast holds 50 rows (0.5 s of work), slow 8 rows (0.8 s): the next goes to fast though it holds more rows.
    d.submit(req(3, 50));
    d.submit(req(4, 8));
    d.submit(req(5, 1));
    expect(sent(d.assign(2_000))).toEqual(["fast:3", "slow:4", "fast:5"]);
  });

  it("bounds a tab at outstandingBatches × maxBatch rows, and later requests wait their turn", () => {
    const d = withTabs(["a"], 4, { outstandingBatches: 2 });
    d.submit(req(1, 5));
    d.submit(req(2, 3));
    d.submit(req(3, 1));
    // 5 + 3 = 8 = 2 × 4 fits; one more row does not.
    expect(sent(d.assign(0))).toEqual(["a:1", "a:2"]);
    expect(d.queued).toBe(1);
    expect(d.assign(10)).toEqual([]);
    expect(d.reply("a", 1, 20)?.id).toBe(1);
    expect(sent(d.assign(20))).toEqual(["a:3"]);
  });

  it("keeps arrival order: a request that does not fit holds back smaller ones behind it", () => {
    const d = withTabs(["a"], 4, { outstandingBatches: 2 });
    d.submit(req(1, 5));
    expect(sent(d.assign(0))).toEqual(["a:1"]);
    d.submit(req(2, 4)); // 5 + 4 > 8
    d.submit(req(3, 1)); // would fit, but arrived later
    expect(d.assign(1)).toEqual([]);
    expect(d.queued).toBe(2);
    d.reply("a", 1, 2);
    expect(sent(d.assign(2))).toEqual(["a:2", "a:3"]);
  });

  it("gives a tab holding nothing one request however large, and nothing more while it holds it", () => {
    const d = withTabs(["a"], 4, { outstandingBatches: 2 });
    d.submit(req(1, 100));
    d.submit(req(2, 1));
    expect(sent(d.assign(0))).toEqual(["a:1"]);
    expect(d.queued).toBe(1);
    expect(d.assign(1)).toEqual([]);
    d.reply("a", 1, 2);
    expect(sent(d.assign(2))).toEqual(["a:2"]);
  });

  it("gives a draining tab nothing new but still counts its reply", () => {
    const d = withTabs(["a"]);
    d.submit(req(1));
    expect(sent(d.assign(0))).toEqual(["a:1"]);
    d.drain("a");
    expect(d.serving).toBe(0);
    expect(d.views()[0]?.draining).toBe(true);
    d.submit(req(2));
    expect(d.assign(1)).toEqual([]);
    expect(d.reply("a", 1, 2)).toEqual(req(1));
    expect(d.assign(3)).toEqual([]);
    expect(d.pending).toBe(1);
    d.addTab("b", 8, false);
    d.loaded("b", 1);
    expect(sent(d.assign(4))).toEqual(["b:2"]);
  });
});

describe("Dispatcher answers each request once", () => {
  it("hedges a request held too long by one tab; the first reply wins and the second is dropped", () => {
    for (const first of ["a", "b"] as const) {
      const second = first === "a" ? "b" : "a";
      const d = withTabs(["a", "b"], 8, { attemptTimeoutMs: 1_000 });
      d.submit(req(7, 2));
      expect(sent(d.assign(0))).toEqual(["a:7"]);
      expect(d.assign(999)).toEqual([]);
      expect(sent(d.assign(1_000))).toEqual(["b:7"]);
      expect(d.rowsHeld("a", 7)).toBe(2);
      expect(d.rowsHeld("b", 7)).toBe(2);
      expect(d.reply(first, 7, 1_100)).toEqual(req(7, 2));
      expect(d.pending).toBe(0);
      // The other copy is released at once: its late reply is dropped.
      expect(d.rowsHeld(second, 7)).toBeUndefined();
      expect(outstanding(d, second)).toBe(0);
      expect(d.reply(second, 7, 1_200)).toBeUndefined();
      expect(d.reply(first, 7, 1_300)).toBeUndefined();
    }
  });

  it("returns undefined for a reply to a request the tab never held, or from an unknown tab", () => {
    const d = withTabs(["a", "b"]);
    d.submit(req(1));
    d.assign(0);
    expect(d.reply("b", 1, 1)).toBeUndefined();
    expect(d.reply("nobody", 1, 1)).toBeUndefined();
    expect(d.reply("a", 99, 1)).toBeUndefined();
    expect(d.pending).toBe(1);
    expect(d.reply("a", 1, 1)?.id).toBe(1);
  });

  it("does not offer a stale request back to the tab holding it, nor to a third tab once hedged", () => {
    const d = withTabs(["a"], 8, { attemptTimeoutMs: 1_000 });
    d.submit(req(1));
    expect(sent(d.assign(0))).toEqual(["a:1"]);
    expect(d.assign(5_000)).toEqual([]);
    expect(outstanding(d, "a")).toBe(1);
    d.addTab("b", 8, false);
    d.loaded("b", 1);
    expect(sent(d.assign(5_001))).toEqual(["b:1"]);
    d.addTab("c", 8, false);
    d.loaded("c", 1);
    // Held by two tabs: not stale however long it takes.
    expect(d.assign(20_000)).toEqual([]);
    expect(d.queued).toBe(0);
  });

  it("a lone tab holding a stale request still takes the requests queued behind it", () => {
    const d = withTabs(["a"], 8, { attemptTimeoutMs: 1_000 });
    d.submit(req(1, 1, 0));
    expect(sent(d.assign(0))).toEqual(["a:1"]);
    d.submit(req(2, 1, 1_500));
    d.submit(req(3, 1, 1_600));
    // Request 1 is stale and waits for another tab; it must not block 2 and 3.
    expect(sent(d.assign(2_000))).toEqual(["a:2", "a:3"]);
    expect(d.reply("a", 1, 2_100)?.id).toBe(1);
    expect(d.reply("a", 2, 2_100)?.id).toBe(2);
    expect(d.reply("a", 3, 2_100)?.id).toBe(3);
    expect(d.pending).toBe(0);
  });

  it("queues a hedged request only once when its holder fails it", () => {
    // A stale request already waiting for a second tab, failed by its only holder (or left by it),
    // must not be queued twice: `queued` would over-count it, and the leftover copy would hedge the
    // new attempt to another tab at once, though it is far younger than attemptTimeoutMs.
    const d = withTabs(["a"], 8, { attemptTimeoutMs: 1_000 });
    d.addTab("b", 8, false);
    d.submit(req(1));
    expect(sent(d.assign(0))).toEqual(["a:1"]);
    expect(d.assign(1_000)).toEqual([]); // stale: waits in the queue for a tab other than a
    d.failed("a", 1, 1_000);
    // Queued once, and never offered again to the tab that failed it: it waits for b.
    expect(d.queued).toBe(1);
    expect(d.assign(1_000)).toEqual([]);
    d.loaded("b", 1);
    expect(sent(d.assign(1_001))).toEqual(["b:1"]);
    expect(d.queued).toBe(0);
  });
});

describe("Dispatcher never loses a request", () => {
  it("requeues what a removed tab held at the front, ahead of newer requests, for another tab", () => {
    const d = withTabs(["a", "b"], 1, { outstandingBatches: 1 });
    for (let id = 1; id <= 4; id++) d.submit(req(id, 1, id * 10));
    expect(sent(d.assign(40))).toEqual(["a:1", "b:2"]);
    expect(d.queued).toBe(2);
    d.removeTab("a", 50);
    expect(d.hasTab("a")).toBe(false);
    expect(d.queued).toBe(3);
    expect(d.pending).toBe(4);
    expect(d.reply("a", 1, 51)).toBeUndefined();
    d.addTab("c", 1, false);
    d.loaded("c", 1);
    expect(sent(d.assign(60))).toEqual(["c:1"]);
    expect(d.reply("b", 2, 70)?.id).toBe(2);
    expect(sent(d.assign(70))).toEqual(["b:3"]);
  });

  it("requeues several requests of a removed tab in their arrival order", () => {
    const d = withTabs(["a"], 8);
    d.submit(req(1, 1, 0));
    d.submit(req(2, 1, 5));
    expect(sent(d.assign(10))).toEqual(["a:1", "a:2"]);
    d.submit(req(3, 1, 20));
    d.removeTab("a", 30);
    d.addTab("b", 1, false);
    d.loaded("b", 1);
    d.addTab("c", 1, false);
    d.loaded("c", 1);
    d.addTab("e", 1, false);
    d.loaded("e", 1);
    expect(sent(d.assign(40))).toEqual(["b:1", "c:2", "e:3"]);
  });

  it("does not requeue a hedged request when one of its two holders leaves", () => {
    const d = withTabs(["a", "b"], 8, { attemptTimeoutMs: 1_000 });
    d.submit(req(1));
    d.assign(0);
    expect(sent(d.assign(1_000))).toEqual(["b:1"]);
    d.removeTab("a", 1_100);
    expect(d.queued).toBe(0);
    expect(d.assign(1_100)).toEqual([]);
    expect(d.reply("b", 1, 1_200)?.id).toBe(1);
    expect(d.pending).toBe(0);
  });

  it("requeues a failed request at the front; a failure from a tab not holding it changes nothing", () => {
    const d = withTabs(["a"], 1, { outstandingBatches: 1 });
    d.submit(req(1, 1, 0));
    d.submit(req(2, 1, 1));
    expect(sent(d.assign(1))).toEqual(["a:1"]);
    d.failed("b", 1, 2);
    d.failed("a", 2, 2);
    expect(d.rowsHeld("a", 1)).toBe(1);
    expect(d.queued).toBe(1);
    d.failed("a", 1, 3);
    expect(d.rowsHeld("a", 1)).toBeUndefined();
    expect(d.queued).toBe(2);
    expect(d.pending).toBe(2);
    // At the front, but a failed it: the next request goes to a, request 1 waits for another tab.
    expect(sent(d.assign(4))).toEqual(["a:2"]);
    d.addTab("b", 1, false);
    d.loaded("b", 1);
    expect(sent(d.assign(5))).toEqual(["b:1"]);
  });

  it("does not requeue a failed request another tab still holds", () => {
    const d = withTabs(["a", "b"], 8, { attemptTimeoutMs: 1_000 });
    d.submit(req(1));
    d.assign(0);
    d.assign(1_000);
    d.failed("a", 1, 1_100);
    expect(d.queued).toBe(0);
    expect(d.assign(1_100)).toEqual([]);
    expect(d.reply("a", 1, 1_200)).toBeUndefined();
    expect(d.reply("b", 1, 1_200)?.id).toBe(1);
  });

  it("expires queued and held requests at their deadline; a later reply is dropped", () => {
    const d = withTabs(["a"], 1, { outstandingBatches: 1 });
    d.submit(req(1, 1, 0, 1_000));
    d.submit(req(2, 1, 0, 1_000));
    d.submit(req(3, 1, 0, 5_000));
    expect(sent(d.assign(0))).toEqual(["a:1"]);
    expect(d.expire(999)).toEqual([]);
    expect(
      d
        .expire(1_000)
        .map((r) => r.id)
        .sort(),
    ).toEqual([1, 2]);
    expect(d.pending).toBe(1);
    expect(d.queued).toBe(1);
    expect(d.rowsHeld("a", 1)).toBeUndefined();
    expect(d.reply("a", 1, 1_001)).toBeUndefined();
    expect(d.expire(1_001)).toEqual([]);
    // The expired request no longer holds the tab's room.
    expect(sent(d.assign(1_001))).toEqual(["a:3"]);
  });

  it("does not requeue a request past its deadline, but still expires it", () => {
    const d = withTabs(["a"], 8);
    d.submit(req(1, 1, 0, 1_000));
    d.assign(0);
    d.removeTab("a", 2_000);
    expect(d.queued).toBe(0);
    expect(d.pending).toBe(1);
    expect(d.expire(2_000).map((r) => r.id)).toEqual([1]);
    expect(d.pending).toBe(0);
  });
});

describe("Dispatcher bounds", () => {
  it("refuses with full past maxPendingRows, and frees room once answered or expired", () => {
    const d = withTabs(["a"], 100, { maxPendingRows: 10 });
    expect(d.submit(req(1, 6))).toBe("queued");
    expect(d.submit(req(2, 5))).toBe("full");
    expect(d.pending).toBe(1);
    expect(d.submit(req(3, 4, 0, 500))).toBe("queued");
    expect(d.submit(req(4, 1))).toBe("full");
    expect(sent(d.assign(0))).toEqual(["a:1", "a:3"]);
    expect(d.reply("a", 1, 10)?.id).toBe(1);
    // A refused request may be submitted again later under the same id.
    expect(d.submit(req(2, 5))).toBe("queued");
    expect(d.submit(req(4, 2))).toBe("full");
    expect(d.expire(500).map((r) => r.id)).toEqual([3]);
    expect(d.submit(req(4, 2))).toBe("queued");
    expect(d.submit(req(5, 4))).toBe("full");
  });

  it("drainAll returns every request, queued and held, and empties the dispatcher", () => {
    const d = withTabs(["a"], 1, { outstandingBatches: 1, maxPendingRows: 3 });
    d.submit(req(1));
    d.submit(req(2));
    d.submit(req(3));
    d.assign(0);
    expect(
      d
        .drainAll()
        .map((r) => r.id)
        .sort(),
    ).toEqual([1, 2, 3]);
    expect(d.pending).toBe(0);
    expect(d.queued).toBe(0);
    expect(outstanding(d, "a")).toBe(0);
    expect(d.reply("a", 1, 1)).toBeUndefined();
    expect(d.drainAll()).toEqual([]);
    // Room and the tab are free again.
    expect(d.submit(req(4, 3))).toBe("queued");
    expect(sent(d.assign(2))).toEqual(["a:4"]);
  });
});

describe("Dispatcher capacity", () => {
  it("measures rows per second of busy time, smoothed, ignoring idle time", () => {
    const d = withTabs(["a"], 100);
    expect(d.measure(0)).toBeUndefined();
    d.submit(req(1, 50));
    d.assign(0);
    d.reply("a", 1, 500);
    expect(d.measure(500)).toBeCloseTo(100, 6);
    expect(d.views()[0]?.capacityRps).toBeCloseTo(100, 6);
    // Idle for 9.5 s, then 50 rows in 250 ms (200 rows/s): 0.7 × 100 + 0.3 × 200.
    d.submit(req(2, 50, 10_000));
    d.assign(10_000);
    d.reply("a", 2, 10_250);
    expect(d.measure(10_250)).toBeCloseTo(130, 6);
  });

  it("waits for enough busy time before measuring", () => {
    const d = withTabs(["a"], 100);
    d.submit(req(1, 50));
    d.assign(0);
    d.reply("a", 1, 100);
    expect(d.measure(100)).toBeUndefined();
    expect(d.views()[0]?.capacityRps).toBeUndefined();
    // The short stretch is kept and counted with the next one: 100 rows over 400 ms.
    d.submit(req(2, 50, 1_000));
    d.assign(1_000);
    d.reply("a", 2, 1_300);
    expect(d.measure(1_300)).toBeCloseTo(250, 6);
  });

  it("counts a tab's busy time while it still holds work", () => {
    const d = withTabs(["a"], 100);
    d.submit(req(1, 50));
    d.submit(req(2, 50));
    d.assign(0);
    d.reply("a", 1, 500);
    // Busy 0..1000 with 50 rows answered.
    expect(d.measure(1_000)).toBeCloseTo(50, 6);
  });

  it("averages capacity over serving tabs only", () => {
    const d = withTabs(["a", "b", "c"], 1_000);
    d.submit(req(1, 50));
    d.submit(req(2, 300));
    d.submit(req(3, 1_000));
    expect(sent(d.assign(0))).toEqual(["a:1", "b:2", "c:3"]);
    d.reply("a", 1, 500);
    d.reply("b", 2, 1_000);
    d.reply("c", 3, 1_000);
    d.drain("c");
    // a: 100 rows/s, b: 300 rows/s; c (1000 rows/s) is draining.
    expect(d.measure(1_000)).toBeCloseTo(200, 6);
    expect(d.views().find((v) => v.id === "c")?.capacityRps).toBeCloseTo(1_000, 6);
  });

  it("reports each tab's view", () => {
    const d = new Dispatcher();
    d.addTab("a", 8, true);
    d.addTab("b", 8, false);
    d.loaded("b", 4);
    d.submit(req(1));
    d.assign(0);
    expect(d.views()).toEqual([
      { id: "a", round: undefined, outstanding: 0, capacityRps: undefined, dedicated: true, draining: false },
      { id: "b", round: 4, outstanding: 1, capacityRps: undefined, dedicated: false, draining: false },
    ]);
  });
});

describe("Dispatcher fuzz", () => {
  const OPS = 2_000;
  const MAX_PENDING_ROWS = 64;

  for (const seed of [1, 2, 3, 42, 2024]) {
    it(`answers or expires every request exactly once (seed ${seed})`, () => {
      const random = mulberry32(seed);
      const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
      const pick = <T>(items: readonly T[]): T | undefined => items[Math.floor(random() * items.length)];

      const d = new Dispatcher({ maxPendingRows: MAX_PENDING_ROWS, outstandingBatches: 2, attemptTimeoutMs: 400 });
      let now = 0;
      let nextId = 1;
      let nextTab = 1;
      /** Every accepted request, and how it ended. */
      const requests = new Map<number, { request: ServeRequest; answered: number; expired: number }>();
      /** What each live tab was sent (request ids), answered or not. */
      const tabs = new Map<string, { held: Set<number>; loaded: boolean; draining: boolean }>();
      const open = (id: number): boolean => {
        const r = requests.get(id);
        return r !== undefined && r.answered + r.expired === 0;
      };
      const pendingRows = (): number => [...requests.values()].filter((r) => r.answered + r.expired === 0).reduce((sum, r) => sum + r.request.rows, 0);

      const addTab = (): void => {
        const id = `t${nextTab++}`;
        d.addTab(id, int(1, 8), random() < 0.5);
        tabs.set(id, { held: new Set(), loaded: false, draining: false });
      };
      const doAssign = (): void => {
        for (const { tab, request } of d.assign(now)) {
          const model = tabs.get(tab);
          expect(model, `assigned to unknown tab ${tab}`).toBeDefined();
          if (model === undefined) continue;
          expect(model.loaded && !model.draining, `assigned to ${tab}, which does not serve`).toBe(true);
          expect(open(request.id), `assigned request ${request.id}, which is settled`).toBe(true);
          const openHeld = [...model.held].filter(open);
          expect(openHeld, `${tab} sent ${request.id} twice`).not.toContain(request.id);
          model.held.add(request.id);
        }
      };
      const replyFrom = (tab: string, id: number): void => {
        const wasOpen = open(id);
        const answer = d.reply(tab, id, now);
        tabs.get(tab)?.held.delete(id);
        if (wasOpen) {
          expect(answer?.id, `reply from ${tab} for open request ${id}`).toBe(id);
          const r = requests.get(id);
          if (r !== undefined) r.answered++;
        } else {
          expect(answer, `late reply from ${tab} for ${id}`).toBeUndefined();
        }
      };
      const checkInvariants = (): void => {
        const live = [...requests.values()].filter((r) => r.answered + r.expired === 0);
        expect(d.pending).toBe(live.length);
        for (const [id, model] of tabs) {
          const held = [...model.held].filter(open);
          expect(d.views().find((v) => v.id === id)?.outstanding, `outstanding of ${id}`).toBe(held.length);
          for (const requestId of held) expect(d.rowsHeld(id, requestId)).toBe(requests.get(requestId)?.request.rows);
        }
        // Never lost: a live request no tab holds waits in the queue.
        const heldSomewhere = new Set([...tabs.values()].flatMap((t) => [...t.held]));
        const unheld = live.filter((r) => r.request.deadline > now && !heldSomewhere.has(r.request.id)).length;
        expect(d.queued).toBeGreaterThanOrEqual(unheld);
      };

      addTab();
      for (let op = 0; op < OPS; op++) {
        const roll = random();
        if (roll < 0.25) {
          const rows = int(1, 12);
          const request = req(nextId++, rows, now, now + int(200, 3_000));
          const fits = pendingRows() + rows <= MAX_PENDING_ROWS;
          expect(d.submit(request)).toBe(fits ? "queued" : "full");
          if (fits) requests.set(request.id, { request, answered: 0, expired: 0 });
        } else if (roll < 0.45) {
          doAssign();
        } else if (roll < 0.65) {
          const tab = pick([...tabs.keys()]);
          const id = tab === undefined ? undefined : pick([...(tabs.get(tab)?.held ?? [])]);
          if (tab !== undefined && id !== undefined) replyFrom(tab, id);
        } else if (roll < 0.7) {
          const tab = pick([...tabs.keys()]);
          const id = tab === undefined ? undefined : pick([...(tabs.get(tab)?.held ?? [])]);
          if (tab !== undefined && id !== undefined) {
            d.failed(tab, id, now);
            tabs.get(tab)?.held.delete(id);
          }
        } else if (roll < 0.75) {
          const tab = pick([...tabs.keys()]);
          if (tab !== undefined) {
            d.removeTab(tab, now);
            tabs.delete(tab);
          }
        } else if (roll < 0.8) {
          if (tabs.size < 6) addTab();
        } else if (roll < 0.85) {
          const tab = pick([...tabs.keys()]);
          const model = tab === undefined ? undefined : tabs.get(tab);
          if (tab !== undefined && model !== undefined) {
            d.loaded(tab, int(0, 5));
            model.loaded = true;
          }
        } else if (roll < 0.87) {
          const tab = pick([...tabs.keys()]);
          const model = tab === undefined ? undefined : tabs.get(tab);
          if (tab !== undefined && model !== undefined) {
            d.drain(tab);
            model.draining = true;
          }
        } else if (roll < 0.95) {
          now += int(0, 300);
        } else {
          for (const request of d.expire(now)) {
            expect(request.deadline).toBeLessThanOrEqual(now);
            const r = requests.get(request.id);
            expect(r, `expired unknown request ${request.id}`).toBeDefined();
            expect(open(request.id), `expired settled request ${request.id}`).toBe(true);
            if (r !== undefined) r.expired++;
          }
          for (const r of requests.values()) if (r.answered + r.expired === 0) expect(r.request.deadline).toBeGreaterThan(now);
        }
        checkInvariants();
      }

      // Settle: a fresh serving tab, and every tab answers whatever it holds.
      addTab();
      for (const [id, model] of tabs) {
        d.loaded(id, 9);
        model.loaded = true;
      }
      for (let pass = 0; pass < 200 && d.pending > 0; pass++) {
        doAssign();
        for (const [tab, model] of tabs) for (const id of [...model.held]) replyFrom(tab, id);
        now += 50;
        checkInvariants();
      }
      // Whatever could not be answered (past its deadline, out of the queue) expires.
      now += 10_000;
      for (const request of d.expire(now)) {
        expect(open(request.id)).toBe(true);
        const r = requests.get(request.id);
        if (r !== undefined) r.expired++;
      }
      expect(d.pending).toBe(0);
      doAssign();
      expect(d.queued).toBe(0);
      for (const [id, r] of requests) expect(r.answered + r.expired, `request ${id}: answered ${r.answered}, expired ${r.expired}`).toBe(1);
      expect([...requests.values()].some((r) => r.answered === 1)).toBe(true);
      // All room is free again.
      expect(d.submit(req(nextId, MAX_PENDING_ROWS, now, now + 1))).toBe("queued");
    });
  }
});

describe("late replies", () => {
  it("a reply from a tab that was given up on (another tab answered, or the deadline passed) is late, not forged; a hedge goes only to an idle tab", () => {
    const d = new Dispatcher({ attemptTimeoutMs: 100 });
    for (const id of ["a", "b"]) {
      d.addTab(id, 8, false);
      d.loaded(id, 1);
    }
    d.submit({ id: 1, rows: 2, arrivedAt: 0, deadline: 10_000 });
    const holderOf1 = d.assign(0)[0]?.tab as string;
    const other = holderOf1 === "a" ? "b" : "a";
    // The other tab busy: past the attempt timeout, no copy goes to it.
    d.submit({ id: 2, rows: 3, arrivedAt: 0, deadline: 500 });
    expect(d.assign(10).map((x) => `${x.tab}:${x.request.id}`)).toEqual([`${other}:2`]);
    expect(d.assign(200)).toEqual([]);
    // Once it is idle, the copy goes to it, and it answers first.
    expect(d.expire(600).map((r) => r.id)).toEqual([2]);
    expect(d.assign(600).map((x) => `${x.tab}:${x.request.id}`)).toEqual([`${other}:1`]);
    expect(d.reply(other, 1, 650)?.id).toBe(1);
    // The first holder's reply still carries the request's rows: it is checked, then dropped.
    expect(d.rowsSent(holderOf1, 1)).toBe(2);
    expect(d.rowsHeld(holderOf1, 1)).toBeUndefined();
    expect(d.reply(holderOf1, 1, 660)).toBeUndefined();
    // Only once: a second late reply for the same id is not expected any more.
    expect(d.rowsSent(holderOf1, 1)).toBeUndefined();
    // Expired while held: its holder's reply is late too.
    expect(d.rowsSent(other, 2)).toBe(3);
    expect(d.reply(other, 2, 700)).toBeUndefined();
    // Never sent to a tab: no rows, so the server takes a reply to it for a forgery.
    expect(d.rowsSent("a", 99)).toBeUndefined();
  });
});

describe("capacity of a slow starter", () => {
  it("a tab that answered nothing in a measure is not rated 0: its busy time counts at its first answer, and it keeps getting requests", () => {
    const d = new Dispatcher();
    d.addTab("a", 8, false);
    d.loaded("a", 1);
    d.submit({ id: 1, rows: 4, arrivedAt: 0, deadline: 60_000 });
    d.assign(0);
    // A first predict compiling its shaders: 900 ms busy, nothing answered, at a measure.
    expect(d.measure(900)).toBeUndefined();
    expect(d.views()[0]?.capacityRps).toBeUndefined();
    d.reply("a", 1, 1_000);
    // 4 rows over the whole 1,000 ms busy.
    expect(d.measure(1_500)).toBeCloseTo(4, 6);
    d.submit({ id: 2, rows: 1, arrivedAt: 1_500, deadline: 60_000 });
    expect(d.assign(1_500).map((x) => x.tab)).toEqual(["a"]);
  });
});
