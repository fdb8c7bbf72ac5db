/**
 * A pipeline round's activations between the page, which owns the peer link, and the trainer,
 * which may run in a Web Worker: one MessagePort per round (the page's end is the
 * ActivationBridge, session/activation-bridge.ts). Frames are the protocol's activation frames,
 * passed through untouched; the trainer's inbox decodes and checks them.
 */
export type ToTrainer =
  | { kind: "frame"; from: string; frame: Uint8Array }
  /** The link to `peer` closed: a neighbour there fails the round at once. */
  | { kind: "gone"; peer: string; reason: string }
  /** The coordinator aborted the round. */
  | { kind: "abort"; reason: string }
  | { kind: "sent"; id: number }
  | { kind: "send-failed"; id: number; error: string };

export type ToPage = { kind: "send"; id: number; to: string; frames: Uint8Array[] };

/** A send the page could not make: the link to `peer` failed (its suspect). */
export class SendFailed extends Error {
  override name = "SendFailed";
  constructor(
    readonly peer: string,
    detail: string,
  ) {
    super(`sending activations to ${peer} failed: ${detail}`);
  }
}

/** Whatever reached the stage over its port, handed to the round's inbox. */
export type StagePortHandlers = {
  onFrame: (from: string, frame: Uint8Array) => void;
  onGone: (peer: string, reason: string) => void;
  onAbort: (reason: string) => void;
};

/**
 * The trainer's end of a round's port: `send` resolves once the page's link took every frame (or
 * rejects with SendFailed), and incoming messages go to the handlers. `close` rejects the sends
 * still waiting and closes the port; the round that opened it closes it.
 */
export class StagePortEnd {
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void; to: string }>();
  private nextId = 1;

  constructor(
    private readonly port: MessagePort,
    handlers: StagePortHandlers,
  ) {
    port.onmessage = (event: MessageEvent<ToTrainer>) => {
      const message = event.data;
      switch (message.kind) {
        case "frame":
          return handlers.onFrame(message.from, message.frame);
        case "gone":
          return handlers.onGone(message.peer, message.reason);
        case "abort":
          return handlers.onAbort(message.reason);
        case "sent":
        case "send-failed": {
          const waiter = this.waiting.get(message.id);
          this.waiting.delete(message.id);
          if (message.kind === "sent") waiter?.resolve();
          else waiter?.reject(new SendFailed(waiter.to, message.error));
        }
      }
    };
  }

  send(to: string, frames: Uint8Array<ArrayBuffer>[]): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, to });
      // Moved, not copied (the runner is done with them); frames may share a buffer, which moves once.
      this.port.postMessage({ kind: "send", id, to, frames } satisfies ToPage, [...new Set(frames.map((f) => f.buffer))]);
    });
  }

  close(): void {
    for (const waiter of this.waiting.values()) waiter.reject(new Error("the round's activation port closed"));
    this.waiting.clear();
    this.port.onmessage = null;
    this.port.close();
  }
}
