import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Environment variable that sets the admin token (the CLI's --admin-token wins). */
export const ADMIN_TOKEN_ENV = "CROWDTRAIN_ADMIN_TOKEN";
/** Random bytes in a generated token: 128 bits, written as 32 hex digits. */
const TOKEN_BYTES = 16;
/** An operator-chosen token must be at least this long (tests use "test-token"). */
export const MIN_TOKEN_LENGTH = 8;
const MAX_TOKEN_LENGTH = 256;

export class AdminTokenError extends Error {
  override name = "AdminTokenError";
}

/** A fresh random admin token (128 bits, hex). */
export function generateAdminToken(): string {
  return randomBytes(TOKEN_BYTES).toString("hex");
}

/** Checks an operator-given token; `source` names where it came from in the error. */
export function validateAdminToken(token: string, source: string): string {
  if (token.length < MIN_TOKEN_LENGTH || token.length > MAX_TOKEN_LENGTH) {
    throw new AdminTokenError(`${source} must be ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} characters long, got ${token.length}`);
  }
  // It travels in an Authorization header: visible ASCII only.
  if (!/^[\x21-\x7e]+$/.test(token)) throw new AdminTokenError(`${source} may only contain visible ASCII characters (no spaces)`);
  return token;
}

/** The token of an `Authorization: Bearer <token>` header, or undefined if there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? "");
  return match?.[1];
}

/**
 * Constant-time comparison: both sides are hashed first, so neither the position of the first
 * difference nor the length of the expected token shows in the time taken.
 */
export function tokenMatches(expected: string, given: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text, "utf8").digest();
  return timingSafeEqual(digest(expected), digest(given));
}
