import { describe, expect, it } from "vitest";
import { Batcher, type Batchable } from "../src/batcher.ts";

type Job = Batchable & { tag: string };

const job = (id: number, rows: number): Job => ({ id, rows, tag: `job-${id}` });
const ids = (batch: readonly Batchable[]): number[] => batch.map((r) => r.id);

describe("Batcher", () => {
  it("refuses a bad maxBatch or maxWaitMs", () => {
    for (const bad of [0, -1, 2.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => new Batcher(bad, 10), `maxBatch ${bad}`).toThrow(RangeError);
    for (const bad of [-1, Number.NaN]) expect(() => new Batcher(4, bad), `maxWaitMs ${bad}`).toThrow(RangeError);
    expect(() => new Batcher(1, 0)).not.toThrow();
  });

  it("takes nothing while empty; dueAt is the oldest request's arrival plus maxWaitMs", () => {
    const b = new Batcher<Job>(8, 50);
    expect(b.take(1_000)).toEqual([]);
    expect(b.dueAt()).toBeUndefined();
    b.add(job(1, 1), 100);
    b.add(job(2, 1), 130);
    expect(b.dueAt()).toBe(150);
    expect(b.size).toBe(2);
  });

  it("waits maxWaitMs for a batch that is not full, then takes what waits", () => {
    const b = new Batcher<Job>(8, 50);
    b.add(job(1, 2), 100);
    b.add(job(2, 3), 120);
    expect(b.take(100)).toEqual([]);
    expect(b.take(149)).toEqual([]);
    expect(b.size).toBe(2);
    const batch = b.take(150);
    expect(ids(batch)).toEqual([1, 2]);
    // The requests themselves, not copies.
    expect(batch[0]?.tag).toBe("job-1");
    expect(b.size).toBe(0);
    expect(b.dueAt()).toBeUndefined();
    expect(b.take(10_000)).toEqual([]);
  });

  it("takes a batch as soon as it fills maxBatch rows", () => {
    const b = new Batcher<Job>(4, 1_000);
    b.add(job(1, 1), 0);
    b.add(job(2, 2), 0);
    expect(b.take(0)).toEqual([]);
    b.add(job(3, 1), 1);
    expect(ids(b.take(1))).toEqual([1, 2, 3]);
  });

  it("takes at most maxBatch rows, in arrival order, leaving the rest for the next batch", () => {
    const b = new Batcher<Job>(4, 1_000);
    for (let id = 1; id <= 6; id++) b.add(job(id, 1), id);
    expect(ids(b.take(6))).toEqual([1, 2, 3, 4]);
    // Two rows left, not full: due 1000 ms after request 5 arrived.
    expect(b.dueAt()).toBe(1_005);
    expect(b.take(6)).toEqual([]);
    expect(ids(b.take(1_005))).toEqual([5, 6]);
  });

  it("never splits a request: one that does not fit waits for the next batch", () => {
    const b = new Batcher<Job>(4, 0);
    b.add(job(1, 3), 0);
    b.add(job(2, 2), 0);
    b.add(job(3, 1), 0);
    // 3 + 2 > 4: request 2 starts the next batch, and request 3 stays behind it (arrival order).
    expect(ids(b.take(0))).toEqual([1]);
    expect(ids(b.take(0))).toEqual([2, 3]);
  });

  it("a single request larger than maxBatch forms its own batch, at once", () => {
    const b = new Batcher<Job>(4, 1_000);
    b.add(job(1, 10), 0);
    b.add(job(2, 1), 0);
    const first = b.take(0);
    expect(ids(first)).toEqual([1]);
    expect(first.reduce((sum, r) => sum + r.rows, 0)).toBe(10);
    // What remains is one row again: it waits.
    expect(b.take(1)).toEqual([]);
    expect(ids(b.take(1_000))).toEqual([2]);
  });

  it("an oversized request behind a small one goes in the next batch", () => {
    const b = new Batcher<Job>(4, 1_000);
    b.add(job(1, 1), 0);
    b.add(job(2, 9), 0);
    expect(ids(b.take(0))).toEqual([1]);
    expect(ids(b.take(0))).toEqual([2]);
    expect(b.size).toBe(0);
  });

  it("counts the rows it holds after taking a batch (a later batch fills from the rest)", () => {
    const b = new Batcher<Job>(4, 1_000);
    b.add(job(1, 3), 0);
    b.add(job(2, 3), 0);
    expect(ids(b.take(0))).toEqual([1]);
    // 3 rows wait: not full.
    expect(b.take(1)).toEqual([]);
    b.add(job(3, 1), 2);
    expect(ids(b.take(2))).toEqual([2, 3]);
    expect(b.take(3)).toEqual([]);
  });

  it("with maxWaitMs 0 takes whatever waits at once", () => {
    const b = new Batcher<Job>(100, 0);
    b.add(job(1, 1), 5);
    expect(b.dueAt()).toBe(5);
    expect(ids(b.take(5))).toEqual([1]);
  });

  it("clear returns every waiting request in arrival order and empties it", () => {
    const b = new Batcher<Job>(4, 1_000);
    b.add(job(1, 1), 0);
    b.add(job(2, 9), 1);
    b.add(job(3, 2), 2);
    expect(ids(b.clear())).toEqual([1, 2, 3]);
    expect(b.size).toBe(0);
    expect(b.dueAt()).toBeUndefined();
    expect(b.clear()).toEqual([]);
    // Its row count is reset too: a new small request waits rather than counting as full.
    b.add(job(4, 1), 10);
    expect(b.take(10)).toEqual([]);
    expect(ids(b.take(1_010))).toEqual([4]);
  });
});
