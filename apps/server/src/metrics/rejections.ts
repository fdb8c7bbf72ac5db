import { Counter, type Registry } from "prom-client";
import { SOCKET_REJECTIONS, type SocketRejection } from "../cluster/hub.ts";
import { UPLOAD_REJECTIONS, type UploadRejection } from "../training/uploads.ts";
import { METRIC_PREFIX } from "./registry.ts";

/**
 * Refused worker traffic: sockets and handshakes the hub closed or turned away, and state uploads
 * answered with an error. The reasons are the fixed sets hub.ts and uploads.ts define; every pair
 * starts at 0, so an alert on a rising rate sees the first refusal.
 */
export class RejectionMetrics {
  private readonly counter: Counter<"channel" | "reason">;

  constructor(registers: Registry[]) {
    this.counter = new Counter({
      name: `${METRIC_PREFIX}rejected_messages_total`,
      help: "Worker sockets, messages and state uploads refused, by channel (socket or upload) and reason.",
      labelNames: ["channel", "reason"] as const,
      registers,
    });
    for (const reason of SOCKET_REJECTIONS) this.counter.inc({ channel: "socket", reason }, 0);
    for (const reason of UPLOAD_REJECTIONS) this.counter.inc({ channel: "upload", reason }, 0);
  }

  onSocket(reason: SocketRejection): void {
    this.counter.inc({ channel: "socket", reason });
  }

  onUpload(reason: UploadRejection): void {
    this.counter.inc({ channel: "upload", reason });
  }
}
