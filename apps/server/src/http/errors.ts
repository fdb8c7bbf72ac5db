import http from "node:http";
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from "express";

/**
 * Every HTTP error the server answers is `application/json` `{ "error": "..." }` with a message we
 * wrote ourselves. Express's default error page is HTML holding the error's stack trace, which tells
 * a stranger our file paths and library versions; an exception's own message can carry the same (a
 * failed `stat` names the file). So only messages we chose reach the client: HttpError's, or a fixed
 * text per body-parser error type; anything else is "internal error" and one line in the log.
 */

/** A failure that the client caused or should know about: its status and message are sent as they are. */
export class HttpError extends Error {
  override name = "HttpError";
  constructor(
    readonly status: number,
    message: string,
    /** Extra response headers, e.g. Retry-After on a 503. */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    if (!Number.isInteger(status) || status < 400 || status > 599) throw new RangeError(`HttpError status must be 400..599, got ${status}`);
  }
}

/** Longest request path echoed back in a 404 (the rest of a long URL tells the client nothing new). */
export const MAX_ECHOED_PATH_CHARS = 200;
/** Longest error text written to the log in one line. */
export const MAX_LOGGED_ERROR_CHARS = 500;

/** Headers of whatever the handler had started to answer that do not describe a JSON error body. */
const STALE_HEADERS = ["Content-Encoding", "Content-Length", "Content-Disposition", "Content-Range", "Content-Language", "ETag", "Last-Modified"];

/**
 * Answers `{ "error": message }` as JSON. When the request body was not read to its end (refused by
 * its headers, or cut at the size limit), the connection is closed after the answer: otherwise Node
 * would keep reading and discarding whatever the client still sends, for as long as it sends.
 */
export function sendError(res: http.ServerResponse, status: number, message: string, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent) {
    // Half an answer is out; a JSON error cannot follow it. Closing tells the client it is incomplete.
    res.destroy();
    return;
  }
  for (const name of STALE_HEADERS) res.removeHeader(name);
  for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
  const body = JSON.stringify({ error: message });
  res.statusCode = status;
  res.setHeader("Content-Type", "application/json; charset=utf-8");
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.setHeader("Cache-Control", "no-store");
  if (bodyUnread(res.req)) res.setHeader("Connection", "close");
  res.end(body);
}

/**
 * Whether the request has a body that has not all arrived yet. Not `!req.complete` alone: a handler
 * runs before Node marks even a bodyless GET complete, and closing those would end keep-alive.
 */
function bodyUnread(req: http.IncomingMessage | undefined): boolean {
  if (req === undefined || req.complete) return false;
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

/** The last handler: a JSON 404 naming the method and path (not the query, which may hold tokens). */
export function notFoundHandler(): RequestHandler {
  return (req, res) => {
    sendError(res, 404, `no route for ${req.method} ${requestPath(req)}`);
  };
}

export type ErrorHandlerOptions = {
  /** Receives one line per unexpected error (a 500); client errors and HttpErrors are not logged. */
  onLog: (text: string) => void;
};

/**
 * The last error handler, replacing Express's HTML page for every error: HttpError keeps its status
 * and message; body-parser's errors (they carry `status` and a `type`) get a fixed message per type;
 * anything else is a 500 "internal error", logged once, with no detail in the answer.
 */
export function errorHandler(options: ErrorHandlerOptions): ErrorRequestHandler {
  return (error: unknown, req: Request, res: Response, _next: NextFunction) => {
    const answer = describeError(error);
    // An HttpError was answered on purpose (a 503 when busy): only the unexpected is logged.
    if (answer.status >= 500 && !(error instanceof HttpError)) {
      const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      options.onLog(`${req.method} ${requestPath(req)} failed: ${oneLine(text, MAX_LOGGED_ERROR_CHARS)}`);
    }
    sendError(res, answer.status, answer.message, answer.headers);
  };
}

/**
 * Express 4 does not pass a rejected promise from an async handler to the error handler (Node
 * would report an unhandled rejection instead): this wrapper does.
 */
export function asyncRoute(handler: (req: Request, res: Response) => Promise<void>): RequestHandler {
  return (req, res, next) => {
    handler(req, res).catch(next);
  };
}

type Answer = { status: number; message: string; headers?: Readonly<Record<string, string>> };

/** What to answer for an error; exported for tests. Only texts written here or in an HttpError are used. */
export function describeError(error: unknown): Answer {
  if (error instanceof HttpError) return { status: error.status, message: error.message, headers: error.headers };
  const status = errorStatus(error);
  if (status === undefined || status >= 500) return { status: 500, message: "internal error" };
  const fields = error as { type?: unknown; limit?: unknown; charset?: unknown };
  switch (fields.type) {
    case "entity.too.large":
      return { status: 413, message: typeof fields.limit === "number" ? `request body is larger than the limit of ${fields.limit} bytes` : "request body is too large" };
    case "encoding.unsupported":
      return { status: 415, message: fields.charset === undefined ? "compressed bodies are not accepted" : "unsupported charset" };
    case "charset.unsupported":
      return { status: 415, message: "unsupported charset" };
    case "entity.parse.failed":
      return { status: 400, message: "request body is not valid JSON" };
    case "request.aborted":
      return { status: 400, message: "request aborted before its body was complete" };
    case "request.size.invalid":
      return { status: 400, message: "request body length does not match its Content-Length" };
    case "parameters.too.many":
      return { status: 413, message: "too many parameters" };
    case "entity.verify.failed":
      return { status: 403, message: "request body refused" };
    default:
      // Another 4xx with a status (express.static, the router's URI decoding): its message may
      // name a file, so only the status's standard text is sent.
      return { status, message: (http.STATUS_CODES[status] ?? "request error").toLowerCase() };
  }
}

/** `status` or `statusCode` when it is an HTTP error status; undefined otherwise. */
function errorStatus(error: unknown): number | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { status, statusCode } = error as { status?: unknown; statusCode?: unknown };
  const value = typeof status === "number" ? status : statusCode;
  return typeof value === "number" && Number.isInteger(value) && value >= 400 && value <= 599 ? value : undefined;
}

function requestPath(req: Request): string {
  const url = req.originalUrl || req.url;
  const path = url.split("?", 1)[0] ?? "";
  return path.length > MAX_ECHOED_PATH_CHARS ? `${path.slice(0, MAX_ECHOED_PATH_CHARS)}...` : path;
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s*[\r\n]+\s*/g, " ");
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}
