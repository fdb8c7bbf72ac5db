import * as v from "valibot";
import type { ParsedBody } from "./admin.ts";
import { MessageError } from "./messages.ts";

/**
 * GET /api/config: what a worker needs before it opens its PeerJS peer. The server checks the
 * operator's ICE servers with these schemas at startup (`checkIceServers`) and answers with them;
 * the worker parses the answer with them (`parseSignallingConfig`). The list reaches every
 * volunteer's browser as is, so only STUN/TURN URLs and RTCIceServer's three keys get through.
 */

const ICE_URL = /^(stun|stuns|turn|turns):\S+$/;
const URLS_SHAPE = "must be a URL string or a non-empty array of them";
const ENTRY_SHAPE = 'must be an object like {"urls":"turn:host:3478","username":"u","credential":"p"}';

const badUrl = (issue: v.BaseIssue<unknown>): string => `has ${JSON.stringify(issue.input)}; expected stun:, stuns:, turn: or turns: URLs`;
const IceUrlSchema = v.pipe(v.string(badUrl), v.regex(ICE_URL, badUrl));

/** A strict object's issue for a key it does not know (valibot reports the first one, at that key's path). */
const isUnknownKey = (issue: v.BaseIssue<unknown>): boolean => issue.type === "strict_object" && issue.expected === "never";

/**
 * The messages of an object schema: the value is no object, a key is missing (the issue sits at
 * that key), or (strict objects) it has keys beyond `known`, all listed in one message.
 */
function objectMessage(shape: string, known: ReadonlySet<string>): (issue: v.BaseIssue<unknown>) => string {
  return (issue) => {
    if (issue.path === undefined) return shape;
    if (!isUnknownKey(issue)) return "is required";
    const entry = issue.path.at(-1)?.input;
    const keys = typeof entry === "object" && entry !== null ? Object.keys(entry).filter((key) => !known.has(key)) : [];
    return `has unknown keys: ${keys.length > 0 ? keys.join(", ") : String(issue.input)}`;
  };
}

const iceServerEntries = {
  urls: v.union([IceUrlSchema, v.pipe(v.array(IceUrlSchema), v.minLength(1, URLS_SHAPE))], URLS_SHAPE),
  username: v.optional(v.string("must be a string")),
  credential: v.optional(v.string("must be a string")),
};

/** One RTCIceServer, as the operator configures it and the browser receives it. */
export const IceServerSchema = v.strictObject(iceServerEntries, objectMessage(ENTRY_SHAPE, new Set(Object.keys(iceServerEntries))));
export type IceServer = v.InferOutput<typeof IceServerSchema>;

export const IceServersSchema = v.array(IceServerSchema, (issue) => `must be a JSON array of ICE servers, got ${typeof issue.input}`);

/** The answer of GET /api/config. Extra keys are ignored: a newer server may add some. */
export const SignallingConfigSchema = v.object(
  {
    /** Where the PeerJS signalling server is mounted on the page's own origin. */
    peerPath: v.pipe(v.string("must be a string"), v.startsWith("/", "must be an absolute path like /peerjs")),
    /**
     * The operator's STUN/TURN servers; empty by default (Crowdtrain contacts no public server on its
     * own). A request made with a worker's identity also gets that worker's own time-limited TURN
     * credentials here, when the operator runs a TURN server with a shared secret.
     */
    iceServers: IceServersSchema,
    /** "relay": peers connect only through TURN, so no volunteer learns another's address. Default "all". */
    iceTransportPolicy: v.optional(v.picklist(["all", "relay"], 'must be "all" or "relay"')),
  },
  objectMessage("must be an object {peerPath, iceServers}", new Set()),
);
export type SignallingConfig = v.InferOutput<typeof SignallingConfigSchema>;

/** `[0].urls[1]`: a valibot issue path as it reads after the name of its source. */
function formatPath(path: readonly v.IssuePathItem[]): string {
  return path.map((item) => (typeof item.key === "number" ? `[${item.key}]` : `.${String(item.key)}`)).join("");
}

/** Each problem prefixed with where it is, e.g. `CROWDTRAIN_ICE_SERVERS[0].urls has "https://x"; expected ...`. */
function describeIssues(issues: readonly v.BaseIssue<unknown>[], source: string): string {
  return issues
    .map((issue) => {
      const path = issue.path ?? [];
      // An unknown key's issue sits at that key; the message already names it, so point at its entry.
      const where = isUnknownKey(issue) ? path.slice(0, -1) : path;
      return `${source}${formatPath(where)} ${issue.message}`;
    })
    .join("; ");
}

/** Checks an operator's ICE server list (already JSON-decoded); `source` names where it came from in the problem. */
export function checkIceServers(input: unknown, source: string): ParsedBody<IceServer[]> {
  const result = v.safeParse(IceServersSchema, input);
  return result.success ? { ok: true, value: result.output } : { ok: false, problem: describeIssues(result.issues, source) };
}

/** Parses the JSON-decoded answer of GET /api/config; throws MessageError naming every problem. */
export function parseSignallingConfig(input: unknown): SignallingConfig {
  const result = v.safeParse(SignallingConfigSchema, input);
  if (!result.success) throw new MessageError(`bad /api/config: ${describeIssues(result.issues, "config")}`);
  return result.output;
}
