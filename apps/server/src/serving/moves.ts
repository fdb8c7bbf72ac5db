/** A member the autoscaler may move, as the coordinator sees it. */
export type Candidate = { peerId: string; state: string; samplesPerSecond: number | undefined; joinedAt: number };

/**
 * Which trainers go to serving: at most `count`, never leaving fewer than `minTrainers` training, and
 * never one still fetching the state (it holds no weights to serve yet). The slowest first: a ring
 * waits for its slowest member, so taking it out costs training the least, and predicting one
 * small batch is cheap even for a slow tab.
 */
export function chooseToServe(trainers: readonly Candidate[], count: number, minTrainers: number): string[] {
  const spare = Math.max(0, trainers.length - minTrainers);
  return trainers
    .filter((m) => m.state === "ready" || m.state === "training")
    .sort((a, b) => (a.samplesPerSecond ?? 0) - (b.samplesPerSecond ?? 0) || b.joinedAt - a.joinedAt)
    .slice(0, Math.min(count, spare))
    .map((m) => m.peerId);
}

/** Which serving tabs go back to training: the least busy first, so the fewest requests are retried. */
export function chooseToTrain(tabs: readonly { id: string; outstanding: number }[], count: number): string[] {
  return [...tabs]
    .sort((a, b) => a.outstanding - b.outstanding)
    .slice(0, Math.max(0, count))
    .map((t) => t.id);
}
