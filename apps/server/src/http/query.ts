import { HttpError } from "./errors.ts";

/**
 * `GET /api/state?round=` with Express's query parser. `Number(req.query.round)` turned `?round=`
 * (""), `?round[]=0` (["0"]), `0x0` and ` 0` into round 0, `1e3` into 1000: a typo silently fetched
 * another round's state. Only plain decimal digits are a round now; anything else is a 400 that
 * shows what arrived.
 */

/** Largest round accepted: rounds are u32 everywhere else (frames, state headers). */
export const MAX_ROUND = 0xffff_ffff;
/** Longest received value echoed back in the 400's message. */
const MAX_ECHOED_CHARS = 40;

/** undefined (no `round`: the latest state), a round number, or throws HttpError 400. */
export function parseRoundQuery(value: unknown): number | undefined {
  return value === undefined ? undefined : parseCountQuery("round", value, MAX_ROUND, 0);
}

/**
 * A count from the query string (`?offset=`, `?limit=`), the same strict way: undefined gives
 * `fallback`; plain decimal digits up to `max` give their value; anything else is a 400 naming it.
 */
export function parseCountQuery(name: string, value: unknown, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  // At most 10 digits before Number(): a long digit string must not round to a float.
  if (typeof value === "string" && /^[0-9]{1,10}$/.test(value)) {
    const count = Number(value);
    if (count <= max) return count;
  }
  throw new HttpError(400, `${name} must be decimal digits from 0 to ${max}, got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (typeof value === "string") {
    return value === "" ? "an empty value" : JSON.stringify(value.length > MAX_ECHOED_CHARS ? `${value.slice(0, MAX_ECHOED_CHARS)}...` : value);
  }
  // Express's parser (qs) makes arrays of `round=1&round=2` and `round[]=0`, objects of `round[x]=0`.
  if (Array.isArray(value)) return `a list of ${value.length} values (round given more than once or as round[])`;
  if (typeof value === "object" && value !== null) return "an object (round[key]=...)";
  return typeof value;
}
