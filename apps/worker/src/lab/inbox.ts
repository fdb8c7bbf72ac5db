import { withTimeout } from "../wait.ts";

/**
 * Bytes received on one connection, kept until someone reads them. Data can arrive before the
 * test calls receivePattern(), so nothing may depend on a reader being there first.
 */
export class Inbox {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private wake: (() => void) | null = null;

  push(chunk: Uint8Array): void {
    this.chunks.push(chunk);
    this.size += chunk.byteLength;
    this.wake?.();
  }

  get buffered(): number {
    return this.size;
  }

  /** Resolves with exactly `n` bytes; rejects if they have not all arrived after `timeoutMs`. */
  async read(n: number, timeoutMs: number, what: string): Promise<Uint8Array> {
    if (this.wake) throw new Error(`${what}: another read is already waiting on this connection`);
    const deadline = performance.now() + timeoutMs;
    while (this.size < n) {
      const left = deadline - performance.now();
      const arrived = new Promise<void>((resolve) => (this.wake = resolve));
      try {
        await withTimeout(arrived, Math.max(0, left), `${what} (${this.size} of ${n} bytes arrived)`);
      } finally {
        this.wake = null;
      }
    }
    return this.take(n);
  }

  private take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const head = this.chunks[0];
      if (head === undefined) throw new Error("inbox accounting is broken: ran out of chunks");
      const used = Math.min(head.byteLength, n - filled);
      out.set(head.subarray(0, used), filled);
      filled += used;
      if (used === head.byteLength) this.chunks.shift();
      else this.chunks[0] = head.subarray(used);
    }
    this.size -= n;
    return out;
  }
}
