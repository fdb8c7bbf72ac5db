/** A bounded log of what happened in the cluster, newest last, for the dashboard and /api/status. */
export type ClusterEvent = { at: number; kind: string; text: string };

export class EventLog {
  private readonly events: ClusterEvent[] = [];
  constructor(private readonly capacity = 500) {}

  add(event: ClusterEvent): void {
    this.events.push(event);
    if (this.events.length > this.capacity) this.events.splice(0, this.events.length - this.capacity);
  }

  recent(limit = this.capacity): ClusterEvent[] {
    return this.events.slice(-limit);
  }
}
