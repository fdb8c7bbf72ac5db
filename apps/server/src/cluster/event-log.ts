/** A bounded log of what happened in the cluster, newest last, for the dashboard and /api/status. */
import type { ClusterEvent } from "@crowdtrain/protocol";

export class EventLog {
  private readonly events: ClusterEvent[] = [];
  /** `onAdd`: each event as it is added (the server's log on stdout). */
  constructor(
    private readonly capacity = 500,
    private readonly onAdd?: (event: ClusterEvent) => void,
  ) {}

  add(event: ClusterEvent): void {
    this.events.push(event);
    this.onAdd?.(event);
    if (this.events.length > this.capacity) this.events.splice(0, this.events.length - this.capacity);
  }

  recent(limit = this.capacity): ClusterEvent[] {
    return this.events.slice(-limit);
  }
}
