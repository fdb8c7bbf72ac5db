// The transport floor for bench:load: a WebSocket server that does only what any coordinator over
// `ws` on Node must do for a round of N members, and nothing a coordinator decides. It counts the
// members' messages (two each, like `phase` and `result`) and, once all have come, writes every member
// a commit-sized and a round-sized text in one corked write, as the hub does. No parsing, no
// coordinator, no HTTP, no heartbeats. Its CPU per round, measured in the same run as the real
// server's, is the part of the server's figure that a faster coordinator cannot remove.
//
// Run by load.bench.ts: node --import tsx floor-server.ts <commit bytes> <round bytes>; prints
// FLOOR_READY <port> once listening, and exits when its parent closes its standard input.
import { WebSocketServer, type WebSocket } from "ws";
import { tcpOf } from "../src/cluster/hub.ts";
import { textOf } from "./floor.ts";

/** Each member sends this many messages a round (phase and result). */
const MESSAGES_PER_MEMBER = 2;

const [commitBytes, roundBytes] = process.argv.slice(2).map(Number);
if (!Number.isInteger(commitBytes) || !Number.isInteger(roundBytes) || commitBytes! < 2 || roundBytes! < 2) {
  throw new Error(`usage: floor-server.ts <commit bytes> <round bytes>, got ${process.argv.slice(2).join(" ")}`);
}

const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
let received = 0;
let round = 0;
wss.on("connection", (ws: WebSocket) => {
  ws.on("message", () => {
    received++;
    if (received < MESSAGES_PER_MEMBER * wss.clients.size) return;
    received = 0;
    round++;
    // One commit text for all members (the coordinator's one object), a round text per member (the hub writes one each).
    const commit = textOf(commitBytes!, `commit ${round}`);
    for (const member of wss.clients) {
      const tcp = tcpOf(member);
      tcp?.cork();
      member.send(commit);
      member.send(textOf(roundBytes!, `round ${round}`));
      tcp?.uncork();
    }
  });
  ws.on("error", (error) => console.error(`floor server: ${error.message}`));
});
wss.on("listening", () => {
  const address = wss.address();
  if (address === null || typeof address === "string") throw new Error(`expected a TCP address, got ${String(address)}`);
  console.log(`FLOOR_READY ${address.port}`);
});
// The parent owns this process: it ends when the parent closes the pipe (or dies).
process.stdin.resume();
process.stdin.on("end", () => wss.close(() => process.exit(0)));
