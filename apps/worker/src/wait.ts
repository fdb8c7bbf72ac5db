/** Thrown when a named wait runs out; the message says what was awaited and for how long. */
export class TimeoutError extends Error {
  override name = "TimeoutError";
}

/**
 * Settles like `promise`, or rejects with a TimeoutError after `ms`. The timer is always cleared.
 * `onTimeout` frees whatever the caller was waiting on (listeners, connections).
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      onTimeout?.();
      reject(new TimeoutError(`${what}: no answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

/** Resolves on the next `type` event of `target`; the listener is removed on timeout too. */
export function nextEvent(target: EventTarget, type: string, ms: number, what: string): Promise<Event> {
  let listener: ((event: Event) => void) | undefined;
  const fired = new Promise<Event>((resolve) => {
    listener = resolve;
    target.addEventListener(type, listener, { once: true });
  });
  return withTimeout(fired, ms, what, () => {
    if (listener) target.removeEventListener(type, listener);
  });
}
