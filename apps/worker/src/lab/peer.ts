// PeerJS primitives for the lab: one Peer per page, raw reliable data connections, and a seeded
// byte-pattern exchange that proves a data channel carries large binary payloads intact.
import { openLabPeer } from "./identity.ts";
import type { DataConnection, Peer } from "peerjs";
import type { ReceiveReport, SendReport } from "../lab-api.ts";
import { Inbox } from "./inbox.ts";
import { firstMismatch, patternBytes } from "./pattern.ts";
import { nextEvent, withTimeout } from "../wait.ts";

/** ICE, DTLS and SCTP between two tabs of one machine; well under a second when it works. */
const CONNECT_TIMEOUT_MS = 15_000;
/** One wait for the send buffer to drain to the low-water mark (a few MiB at ~7 MB/s). */
const DRAIN_TIMEOUT_MS = 20_000;

/** Largest message we send: Chromium's SCTP transport accepts up to 256 KiB. */
const CHUNK_BYTES = 256 * 1024;
/** Stop sending above this many buffered bytes. Below PeerJS's own 8 MiB limit, so its hidden queue never engages. */
const HIGH_WATER_BYTES = 4 * 1024 * 1024;
/** Resume once the buffer is down to this (bufferedamountlow). */
const LOW_WATER_BYTES = 1024 * 1024;

interface Link {
  conn: DataConnection;
  inbox: Inbox;
  open: Promise<void>;
}

let peer: Peer | null = null;
/** Live data connections by remote peer id, outgoing and incoming alike. */
const links = new Map<string, Link>();
/** receivePattern() calls waiting for a connection that has not arrived yet. */
const linkListeners = new Set<(link: Link) => void>();

function adopt(conn: DataConnection): Link {
  const inbox = new Inbox();
  conn.on("data", (data) => {
    if (data instanceof ArrayBuffer) inbox.push(new Uint8Array(data));
    else console.error(`lab: unexpected ${Object.prototype.toString.call(data)} message from ${conn.peer}`);
  });
  conn.on("error", (error) => console.error(`lab: connection with ${conn.peer} failed (${error.type}): ${error.message}`));
  conn.on("close", () => {
    if (links.get(conn.peer)?.conn === conn) links.delete(conn.peer);
  });
  const open = new Promise<void>((resolve, reject) => {
    conn.on("open", resolve);
    conn.on("error", reject);
  });
  // Failures are reported by the error listener above and by whoever awaits `open`.
  open.catch((error: unknown) => console.error(`lab: connection with ${conn.peer} never opened:`, error));
  const link: Link = { conn, inbox, open };
  links.get(conn.peer)?.conn.close();
  links.set(conn.peer, link);
  for (const listener of linkListeners) listener(link);
  return link;
}

function requirePeer(): Peer {
  if (peer === null) throw new Error("call peerOpen() first");
  return peer;
}

export async function peerOpen(): Promise<string> {
  if (peer !== null) throw new Error("peerOpen() was already called on this page");
  const created = await openLabPeer();
  peer = created;
  created.on("connection", (conn) => {
    if (conn.serialization !== "raw") {
      console.error(`lab: refusing a ${conn.serialization} connection from ${conn.peer}; the lab speaks raw`);
      conn.close();
      return;
    }
    adopt(conn);
  });
  created.on("error", (error) => console.error(`lab: PeerJS error (${error.type}): ${error.message}`));
  return created.id;
}

export async function peerConnect(remoteId: string): Promise<void> {
  const local = requirePeer();
  const link = adopt(local.connect(remoteId, { serialization: "raw", reliable: true }));
  // An unknown remote id shows up as a Peer error ("peer-unavailable"), not a connection error.
  let onPeerError: ((error: Error) => void) | undefined;
  const peerFailed = new Promise<never>((_resolve, reject) => {
    onPeerError = reject;
    local.on("error", onPeerError);
  });
  try {
    await withTimeout(Promise.race([link.open, peerFailed]), CONNECT_TIMEOUT_MS, `data connection to ${remoteId}`);
  } catch (error) {
    link.conn.close();
    throw error;
  } finally {
    if (onPeerError) local.off("error", onPeerError);
  }
}

export async function sendPattern(remoteId: string, bytes: number, seed: number): Promise<SendReport> {
  const data = patternBytes(bytes, seed);
  const link = links.get(remoteId);
  if (link === undefined) throw new Error(`no connection with ${remoteId}: call peerConnect() first`);
  await withTimeout(link.open, CONNECT_TIMEOUT_MS, `connection with ${remoteId} opening`);
  const channel = link.conn.dataChannel;
  channel.bufferedAmountLowThreshold = LOW_WATER_BYTES;
  const started = performance.now();
  let chunks = 0;
  for (let offset = 0; offset < bytes; offset += CHUNK_BYTES) {
    const chunk = data.subarray(offset, Math.min(bytes, offset + CHUNK_BYTES));
    if (channel.bufferedAmount + chunk.byteLength > HIGH_WATER_BYTES) {
      await nextEvent(channel, "bufferedamountlow", DRAIN_TIMEOUT_MS, `send buffer to ${remoteId} draining`);
    }
    if (!link.conn.open) throw new Error(`connection with ${remoteId} closed after ${offset} of ${bytes} bytes`);
    link.conn.send(chunk);
    chunks++;
  }
  // Report the time until the bytes have left, not until they were queued.
  channel.bufferedAmountLowThreshold = 0;
  if (channel.bufferedAmount > 0) {
    await nextEvent(channel, "bufferedamountlow", DRAIN_TIMEOUT_MS, `send buffer to ${remoteId} emptying`);
  }
  channel.bufferedAmountLowThreshold = LOW_WATER_BYTES;
  return { bytes, chunks, ms: performance.now() - started };
}

function waitForLink(remoteId: string, timeoutMs: number): Promise<Link> {
  const existing = links.get(remoteId);
  if (existing !== undefined) return Promise.resolve(existing);
  let listener: ((link: Link) => void) | undefined;
  const arrived = new Promise<Link>((resolve) => {
    listener = (link) => {
      if (link.conn.peer === remoteId) resolve(link);
    };
    linkListeners.add(listener);
  });
  return withTimeout(arrived, timeoutMs, `waiting for a connection from ${remoteId}`).finally(() => {
    if (listener) linkListeners.delete(listener);
  });
}

export async function receivePattern(fromId: string, bytes: number, seed: number, timeoutMs: number): Promise<ReceiveReport> {
  const expected = patternBytes(bytes, seed);
  const started = performance.now();
  const link = await waitForLink(fromId, timeoutMs);
  const left = timeoutMs - (performance.now() - started);
  const received = await link.inbox.read(bytes, left, `receiving ${bytes} bytes from ${fromId}`);
  const mismatch = firstMismatch(received, expected);
  return { intact: mismatch === null, bytes: received.byteLength, firstMismatch: mismatch, ms: performance.now() - started };
}

export function peerClose(): void {
  for (const link of links.values()) link.conn.close();
  links.clear();
  peer?.destroy();
  peer = null;
}
