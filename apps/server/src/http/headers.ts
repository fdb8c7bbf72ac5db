import type { RequestHandler } from "express";

/**
 * The Content-Security-Policy of every response. Our pages load only their own bundles, so
 * everything is 'self' except where a feature needs more:
 * - script-src 'wasm-unsafe-eval': WebAssembly compilation (TF.js's wasm backend, long.js), without
 *   allowing JS eval;
 * - worker-src blob:: our trainer worker is a same-origin file, but libraries start theirs from
 *   blob: URLs (TF.js's threaded wasm backend);
 * - connect-src 'self': fetch, EventSource and the WebSockets (/ws, /peerjs). CSP3 'self' also
 *   matches ws:/wss: to the page's own host (Chromium, Firefox), so no ws: scheme is listed;
 * - img-src data: blob:: images a page makes itself (data: icons, canvas or chart exports);
 * - style-src 'unsafe-inline': React's style={...} attributes;
 * - object-src, base-uri 'none' and frame-ancestors 'none': no plugins, no <base> hijack, no framing
 *   (clickjacking a volunteer into consenting).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self' 'wasm-unsafe-eval'",
  "worker-src 'self' blob:",
  "connect-src 'self'",
  "img-src 'self' data: blob:",
  "style-src 'self' 'unsafe-inline'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/** Every header securityHeaders() sets, for tests and docs. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "Content-Security-Policy": CONTENT_SECURITY_POLICY,
  // Browsers must not guess a type: a state upload served back must never run as a script.
  "X-Content-Type-Options": "nosniff",
  // URLs may carry round numbers or tokens; no other site needs to see them.
  "Referrer-Policy": "no-referrer",
  // frame-ancestors for browsers that predate it.
  "X-Frame-Options": "DENY",
  // A page we open, or that opens us, gets no window handle into the worker tab.
  "Cross-Origin-Opener-Policy": "same-origin",
  // Other sites cannot embed our responses (datasets, states) as no-cors resources.
  "Cross-Origin-Resource-Policy": "same-origin",
};

/** Sets SECURITY_HEADERS on every response, errors included; mount it first. */
export function securityHeaders(): RequestHandler {
  const entries = Object.entries(SECURITY_HEADERS);
  return (_req, res, next) => {
    for (const [name, value] of entries) res.setHeader(name, value);
    next();
  };
}
