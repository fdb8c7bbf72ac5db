import type http from "node:http";
import { HttpError } from "./errors.ts";

/**
 * Reading an upload without trusting its sender. express.raw buffers up to its limit *after*
 * inflating gzip/deflate (a small compressed body can unpack to the whole limit), reads the rest of an
 * oversized body before answering, and waits for a stalled body forever. readBody instead:
 * - never decompresses: any Content-Encoding but identity is a 415;
 * - refuses a declared Content-Length over the limit before reading a byte (413);
 * - stops keeping bytes as soon as the count passes the limit (413), so memory stays within `limit`;
 *   what the client still sends is discarded, and sendError closes the connection after answering;
 * - gives up on a body that sends nothing for `idleTimeoutMs` (408), so a slow sender cannot hold
 *   one of the few upload slots (createConcurrencyLimit) forever.
 */

/** How long a request body may send nothing before it is abandoned with a 408. */
export const BODY_IDLE_TIMEOUT_MS = 30_000;
/** Longest header value echoed back in an error message. */
const MAX_ECHOED_HEADER_CHARS = 100;

export type ReadBodyOptions = {
  /** Most bytes accepted; the caller derives it from what it expects (e.g. the job's state size). */
  limit: number;
  /** The only media type accepted, e.g. "application/octet-stream" (parameters such as charset are ignored). */
  type: string;
  /** Longest silence while reading; BODY_IDLE_TIMEOUT_MS unless a test needs shorter. */
  idleTimeoutMs?: number;
};

/** Reads the whole body as bytes, or rejects with an HttpError (408, 413, 415, 400) that says why. */
export function readBody(req: http.IncomingMessage, options: ReadBodyOptions): Promise<Buffer> {
  const { limit, type, idleTimeoutMs = BODY_IDLE_TIMEOUT_MS } = options;
  if (!Number.isSafeInteger(limit) || limit < 0) return Promise.reject(new RangeError(`readBody limit must be a non-negative integer, got ${limit}`));
  if (!(idleTimeoutMs > 0)) return Promise.reject(new RangeError(`readBody idleTimeoutMs must be positive, got ${idleTimeoutMs}`));
  // Server bugs, not client errors: a body parser already ran, or someone asked for strings.
  if (req.readableEnded) return Promise.reject(new Error("readBody: the request body was already read"));
  if (req.readableEncoding !== null) return Promise.reject(new Error("readBody: the request stream has an encoding set; it must deliver bytes"));
  const refusal = headerRefusal(req.headers, limit, type);
  if (refusal !== undefined) return Promise.reject(refusal);
  if (req.destroyed) return Promise.reject(new HttpError(400, "request aborted before its body was complete"));

  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const timer = setTimeout(() => fail(new HttpError(408, `request body sent nothing for ${idleTimeoutMs} ms`)), idleTimeoutMs);

    const stop = (): void => {
      clearTimeout(timer);
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onAbort);
      req.off("close", onAbort);
    };
    const fail = (error: HttpError): void => {
      stop();
      chunks.length = 0;
      // Keep the socket flowing into nowhere (no 'data' listener is left): the bytes the client is
      // still sending are dropped, not buffered; the error answer then closes the connection.
      req.resume();
      reject(error);
    };
    function onData(chunk: Buffer): void {
      received += chunk.length;
      if (received > limit) {
        fail(new HttpError(413, `request body is larger than the limit of ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
      timer.refresh();
    }
    function onEnd(): void {
      stop();
      resolve(Buffer.concat(chunks, received));
    }
    // 'close' before 'end', or 'error' (the client reset the connection): the body is incomplete.
    function onAbort(): void {
      fail(new HttpError(400, "request aborted before its body was complete"));
    }

    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onAbort);
    req.on("close", onAbort);
  });
}

/** Why the request's headers alone rule the body out, or undefined. */
function headerRefusal(headers: http.IncomingHttpHeaders, limit: number, type: string): HttpError | undefined {
  const encoding = headers["content-encoding"]?.trim().toLowerCase();
  if (encoding !== undefined && encoding !== "" && encoding !== "identity") {
    return new HttpError(415, `compressed bodies are not accepted (Content-Encoding ${quote(encoding)})`);
  }
  const contentType = headers["content-type"];
  const mediaType = contentType?.split(";", 1)[0]?.trim().toLowerCase();
  if (mediaType !== type.toLowerCase()) {
    return new HttpError(415, `expected Content-Type ${type}, got ${contentType === undefined ? "none" : quote(contentType)}`);
  }
  const length = headers["content-length"];
  if (length !== undefined) {
    if (!/^[0-9]+$/.test(length)) return new HttpError(400, `Content-Length must be decimal digits, got ${quote(length)}`);
    // Compared as a number: a longer digit string is simply a bigger number (Infinity included).
    if (Number(length) > limit) return new HttpError(413, `request body of ${length} bytes is larger than the limit of ${limit} bytes`);
  }
  return undefined;
}

function quote(value: string): string {
  return JSON.stringify(value.length > MAX_ECHOED_HEADER_CHARS ? `${value.slice(0, MAX_ECHOED_HEADER_CHARS)}...` : value);
}

/**
 * At most `max` holders at once, without waiting: an upload that finds every slot taken is refused
 * (the server answers 503 with Retry-After) instead of queueing, so neither memory (each upload
 * holds up to its limit) nor waiting requests can grow with the number of senders.
 */
export type ConcurrencyLimit = {
  readonly max: number;
  /** Slots held now. */
  readonly active: number;
  /** A release function when a slot was free (calling it again does nothing), else undefined. */
  tryAcquire(): (() => void) | undefined;
};

export function createConcurrencyLimit(max: number): ConcurrencyLimit {
  if (!Number.isInteger(max) || max < 1) throw new RangeError(`concurrency limit must be a positive integer, got ${max}`);
  let active = 0;
  return {
    max,
    get active() {
      return active;
    },
    tryAcquire() {
      if (active >= max) return undefined;
      active++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        active--;
      };
    },
  };
}
