import type { Clock, TimerHandle } from "@crowdtrain/allreduce";

/**
 * Virtual time for the simulator: the all-reducers, the network and the swarm all read this clock,
 * and nothing sleeps. `run` takes the earliest timer, moves time to it, calls it, and then lets the
 * host drain the promise jobs the callback started (`settle`, a macrotask turn: the all-reduce's
 * send pumps and result chains are async) before it takes the next. Timers due at the same time run
 * in the order they were set.
 */
type Timer = { at: number; seq: number; callback: () => void; cancelled: boolean };

export class VirtualClock implements Clock {
  private time = 0;
  private seq = 0;
  private readonly heap: Timer[] = [];
  /** Timers run so far: the simulator's own measure of work. */
  events = 0;

  constructor(private readonly settle: () => Promise<void>) {}

  now(): number {
    return this.time;
  }

  setTimeout(callback: () => void, ms: number): TimerHandle {
    const timer: Timer = { at: this.time + Math.max(0, ms), seq: this.seq++, callback, cancelled: false };
    this.push(timer);
    return timer as unknown as TimerHandle;
  }

  clearTimeout(handle: TimerHandle): void {
    (handle as unknown as Timer).cancelled = true;
  }

  /** Runs timers in time order until `done()` holds, no timer is left, or time would pass `until`. */
  async run(done: () => boolean, until: number): Promise<"done" | "idle" | "until"> {
    await this.settle();
    while (!done()) {
      const next = this.pop();
      if (next === undefined) return "idle";
      if (next.at > until) {
        this.push(next);
        this.time = until;
        return "until";
      }
      this.time = next.at;
      this.events++;
      next.callback();
      await this.settle();
    }
    return "done";
  }

  private push(timer: Timer): void {
    const heap = this.heap;
    heap.push(timer);
    let k = heap.length - 1;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (!before(heap[k] as Timer, heap[parent] as Timer)) break;
      [heap[k], heap[parent]] = [heap[parent] as Timer, heap[k] as Timer];
      k = parent;
    }
  }

  private pop(): Timer | undefined {
    const heap = this.heap;
    while (heap.length > 0) {
      const top = heap[0] as Timer;
      const last = heap.pop() as Timer;
      if (heap.length > 0) {
        heap[0] = last;
        let k = 0;
        for (;;) {
          const [l, r] = [2 * k + 1, 2 * k + 2];
          let least = k;
          if (l < heap.length && before(heap[l] as Timer, heap[least] as Timer)) least = l;
          if (r < heap.length && before(heap[r] as Timer, heap[least] as Timer)) least = r;
          if (least === k) break;
          [heap[k], heap[least]] = [heap[least] as Timer, heap[k] as Timer];
          k = least;
        }
      }
      if (!top.cancelled) return top;
    }
    return undefined;
  }
}

const before = (a: Timer, b: Timer): boolean => a.at < b.at || (a.at === b.at && a.seq < b.seq);
