// The server's own log: every cluster event (joins, departures, aborts, strikes, checkpoints,
// refusals) and the server's warnings, one line each on stdout, as text for a terminal or as JSON
// lines for a log shipper (Loki, journald, Cloud Logging), filtered by level.

export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ["text", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export type LogEntry = { at: number; level: LogLevel; kind: string; text: string };

export interface Logger {
  log(entry: LogEntry): void;
}

/** Cluster event kinds that are worth an operator's attention; the rest are info. */
const KIND_LEVELS: Readonly<Record<string, LogLevel>> = {
  error: "error",
  rejected: "warn",
  banned: "warn",
  evicted: "warn",
  strike: "warn",
  "socket-error": "warn",
  heartbeat: "warn",
  rollback: "warn",
};

export const levelOfKind = (kind: string): LogLevel => KIND_LEVELS[kind] ?? "info";

export function createLogger(options: { format: LogFormat; level: LogLevel; write: (line: string) => void }): Logger {
  const threshold = LOG_LEVELS.indexOf(options.level);
  return {
    log(entry) {
      if (LOG_LEVELS.indexOf(entry.level) < threshold) return;
      options.write(format(entry, options.format));
    },
  };
}

export function format(entry: LogEntry, as: LogFormat): string {
  const time = new Date(entry.at).toISOString();
  if (as === "json") return JSON.stringify({ time, level: entry.level, kind: entry.kind, msg: entry.text });
  // One line per entry whatever the text holds: a newline from a peer's error message must not forge a line.
  return `${time} ${entry.level.padEnd(5)} ${entry.kind}: ${entry.text.replace(/[\r\n]+/g, " ")}`;
}
