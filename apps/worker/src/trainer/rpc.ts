import type { Trainer } from "./api.ts";

/** The page <-> Web Worker messages behind the Trainer API: one request, one reply, matched by id. */
export type TrainerMethod = keyof Trainer;
export type TrainerRequest = { id: number; method: TrainerMethod; args: unknown[] };
export type TrainerReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

/** ArrayBuffers inside a value that can be moved instead of copied (gradients, states), and ports, which must be. */
export function transferablesOf(value: unknown): Transferable[] {
  if (value instanceof ArrayBuffer) return [value];
  if (typeof MessagePort !== "undefined" && value instanceof MessagePort) return [value];
  if (ArrayBuffer.isView(value) && value.buffer instanceof ArrayBuffer) return [value.buffer];
  if (value !== null && typeof value === "object") {
    const found = new Set<Transferable>();
    for (const field of Object.values(value)) for (const buffer of transferablesOf(field)) found.add(buffer);
    return [...found];
  }
  return [];
}
