/**
 * WebSocket close codes and reasons, shared by every socket the server closes.
 *
 * RFC 6455 §5.5: a control frame's payload is at most 125 bytes, two of which carry the close code,
 * so a close reason is at most 123 bytes of UTF-8. `ws` throws a RangeError on a longer reason, and
 * a reason cut in the middle of a multi-byte character is invalid UTF-8, which makes the peer fail
 * the connection (1007) instead of reading our reason.
 */

/** RFC 6455 7.4.1: the endpoint received a message that violates its policy. */
export const CLOSE_POLICY_VIOLATION = 1008;
/** RFC 6455 7.4.1: normal closure; the socket's purpose is fulfilled (e.g. replaced by a newer one). */
export const CLOSE_NORMAL = 1000;
/** Largest close reason, in UTF-8 bytes: a 125-byte control frame less the 2-byte code. */
export const MAX_CLOSE_REASON_BYTES = 123;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * `text` as a valid close reason: line breaks flattened (a reason ends up in one log line), cut to
 * at most MAX_CLOSE_REASON_BYTES UTF-8 bytes without splitting a character.
 */
export function closeReason(text: string): string {
  const flat = text.replace(/[\r\n]+/g, " ");
  const bytes = encoder.encode(flat);
  if (bytes.length <= MAX_CLOSE_REASON_BYTES) return flat;
  let end = MAX_CLOSE_REASON_BYTES;
  // A UTF-8 continuation byte is 0b10xxxxxx: back off to the first byte of the character that
  // straddles the limit, so it is dropped whole.
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return decoder.decode(bytes.subarray(0, end));
}
