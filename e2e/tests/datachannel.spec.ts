import { expect, test } from "../fixtures.ts";

const PAYLOAD_BYTES = 4 * 1024 * 1024;
/** 4 MiB at the ~7 MB/s measured for one channel here, with generous slack for two busy cores. */
const RECEIVE_TIMEOUT_MS = 30_000;

test("two workers in separate contexts exchange 4 MiB intact over a PeerJS data channel", async ({ openWorkers }, testInfo) => {
  const [a, b] = await openWorkers(2, "/lab.html");
  const [idA, idB] = await Promise.all([a!, b!].map((page) => page.evaluate(() => window.crowdtrainLab.peerOpen())));
  await a!.evaluate((remote) => window.crowdtrainLab.peerConnect(remote), idB!);

  for (const [label, sender, receiver, fromId, toId, seed] of [
    ["a -> b", a!, b!, idA!, idB!, 1],
    ["b -> a", b!, a!, idB!, idA!, 2],
  ] as const) {
    const [sent, received] = await Promise.all([
      sender.evaluate(([to, bytes, s]) => window.crowdtrainLab.sendPattern(to, bytes, s), [toId, PAYLOAD_BYTES, seed] as const),
      receiver.evaluate(
        ([from, bytes, s, timeout]) => window.crowdtrainLab.receivePattern(from, bytes, s, timeout),
        [fromId, PAYLOAD_BYTES, seed, RECEIVE_TIMEOUT_MS] as const,
      ),
    ]);
    testInfo.annotations.push({ type: label, description: `${sent.chunks} chunks, sent in ${sent.ms.toFixed(0)} ms, received in ${received.ms.toFixed(0)} ms` });
    expect(received).toMatchObject({ intact: true, bytes: PAYLOAD_BYTES, firstMismatch: null });
    expect(sent.bytes).toBe(PAYLOAD_BYTES);
  }
});
