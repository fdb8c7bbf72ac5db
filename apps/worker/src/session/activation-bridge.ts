import type { Transport } from "@crowdtrain/allreduce";
import { decodeActivationFrame } from "@crowdtrain/protocol";
import type { ToPage, ToTrainer } from "../trainer/stage-port.ts";

/** Frames held for rounds this tab has not begun (a neighbour a round ahead sends far fewer). */
export const MAX_EARLY_FRAMES = 4_096;
/** And their bytes: a peer sending frames of made-up future attempts cannot hold more. */
export const MAX_EARLY_BYTES = 64 * 2 ** 20;
/**
 * When a round opens, held frames of attempts more than this far ahead are dropped: a neighbour is
 * at most a few aborted attempts ahead of this tab, never hundreds.
 */
export const EARLY_ATTEMPT_WINDOW = 8;

/**
 * The page's end of the pipeline rounds' activations: the peer link's "activations" channel on one
 * side, the trainer's port for the running round on the other (trainer/stage-port.ts). A neighbour
 * may begin a round before this tab does, so frames of a later attempt are held (bounded) and handed
 * over when that round opens; frames of an attempt that ended here are dropped, since nothing waits
 * for them. One round at a time: the trainer is one resource.
 */
export class ActivationBridge {
  private round: { attempt: number; port: MessagePort } | undefined;
  private early: { attempt: number; from: string; frame: Uint8Array }[] = [];
  /** The highest attempt opened so far: frames below it are of ended rounds. */
  private lastAttempt = 0;
  private readonly unsubscribe: (() => void)[];

  constructor(
    private readonly channel: Transport,
    private readonly log: (text: string) => void = (text) => console.warn(text),
  ) {
    this.unsubscribe = [channel.onFrame((from, frame) => this.onFrame(from, frame)), channel.onPeerGone((peer, reason) => this.post({ kind: "gone", peer, reason }))];
  }

  /** Opens round `attempt`: the returned port goes to the trainer, which closes it when the round ends. */
  open(attempt: number): MessagePort {
    this.close();
    const { port1, port2 } = new MessageChannel();
    this.round = { attempt, port: port1 };
    this.lastAttempt = Math.max(this.lastAttempt, attempt);
    port1.onmessage = (event: MessageEvent<ToPage>) => this.send(port1, event.data);
    const held = this.early.filter((e) => e.attempt === attempt);
    this.early = this.early.filter((e) => e.attempt > attempt && e.attempt <= attempt + EARLY_ATTEMPT_WINDOW);
    for (const { from, frame } of held) this.post({ kind: "frame", from, frame });
    return port2;
  }

  /** The coordinator aborted `attempt`: its round fails at once instead of waiting for neighbours. */
  abort(attempt: number, reason: string): void {
    if (this.round?.attempt === attempt) this.post({ kind: "abort", reason });
  }

  /** Ends the running round's bridge (the trainer's end is closed by the trainer). */
  close(): void {
    if (this.round === undefined) return;
    this.round.port.onmessage = null;
    this.round.port.close();
    this.round = undefined;
  }

  dispose(): void {
    this.close();
    for (const unsubscribe of this.unsubscribe) unsubscribe();
    this.early = [];
  }

  private onFrame(from: string, frame: Uint8Array): void {
    let attempt: number;
    try {
      attempt = decodeActivationFrame(frame).attempt;
    } catch (error) {
      // The trainer's inbox would refuse it too; without an attempt it belongs to no round.
      this.log(`activations: undecodable frame from ${from} dropped: ${(error as Error).message}`);
      return;
    }
    if (this.round?.attempt === attempt) {
      this.post({ kind: "frame", from, frame: frame.slice() });
      return;
    }
    if (attempt <= this.lastAttempt) return; // a round that ended here
    if (this.early.length >= MAX_EARLY_FRAMES || this.earlyBytes() + frame.byteLength > MAX_EARLY_BYTES) {
      this.log(`activations: more than ${MAX_EARLY_FRAMES} frames or ${MAX_EARLY_BYTES / 2 ** 20} MiB ahead of this tab's round; dropped one from ${from}`);
      return;
    }
    // The view is valid for this call only.
    this.early.push({ attempt, from, frame: frame.slice() });
  }

  private earlyBytes(): number {
    return this.early.reduce((sum, e) => sum + e.frame.byteLength, 0);
  }

  private send(port: MessagePort, message: ToPage): void {
    const sending = (async () => {
      for (const frame of message.frames) await this.channel.send(message.to, frame as Uint8Array<ArrayBuffer>);
    })();
    sending.then(
      () => port.postMessage({ kind: "sent", id: message.id } satisfies ToTrainer),
      (error: unknown) => port.postMessage({ kind: "send-failed", id: message.id, error: error instanceof Error ? error.message : String(error) } satisfies ToTrainer),
    );
  }

  private post(message: ToTrainer): void {
    this.round?.port.postMessage(message);
  }
}
