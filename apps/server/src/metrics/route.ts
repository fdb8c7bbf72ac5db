import type express from "express";
import type { Registry } from "prom-client";
import { sendError } from "../http/errors.ts";

/**
 * `GET /metrics` in the Prometheus text format. Public and read-only like /api/status: the labels
 * are fixed sets (causes, reasons, backends, states), never peer ids, tokens or addresses.
 */
export function metricsRoute(registry: Registry): express.RequestHandler {
  return (_req, res) => {
    registry.metrics().then(
      (text) => {
        // Not res.send: Express would rewrite the type's parameters, and the type is what tells a
        // scraper which exposition format (and version) this is.
        res.setHeader("Content-Type", registry.contentType);
        res.setHeader("Content-Length", Buffer.byteLength(text));
        res.setHeader("Cache-Control", "no-store");
        res.end(text);
      },
      // A collect callback threw: say so (as our own text, not the exception's) rather than hang.
      (error: unknown) => sendError(res, 500, `collecting metrics failed: ${error instanceof Error ? error.name : "unknown error"}`),
    );
  };
}
