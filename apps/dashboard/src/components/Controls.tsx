import { useEffect, useState, type FormEvent } from "react";
import type { Status } from "@crowdtrain/protocol";
import type { AdminAction, AdminResult } from "../admin.ts";

export type ControlsProps = {
  status: Status | undefined;
  /** A token from an earlier visit in this tab (sessionStorage); checked with the server on mount. */
  initialToken: string | undefined;
  request: (token: string, action: AdminAction) => Promise<AdminResult>;
  storeToken: (token: string | undefined) => void;
};

type Message = { kind: "ok" | "error"; text: string };

/**
 * The operator's controls. Without a token the server accepted, everything here is disabled and
 * the panel says it is read-only; the token is asked for once and kept for this tab only.
 */
export function Controls({ status, initialToken, request, storeToken }: ControlsProps) {
  const [token, setToken] = useState<string | undefined>(initialToken);
  const [draft, setDraft] = useState("");
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<Message | undefined>(undefined);
  const [confirmStop, setConfirmStop] = useState(false);
  const [targetDraft, setTargetDraft] = useState<string | undefined>(undefined);

  // A remembered token is checked once: the server may have restarted with another one.
  useEffect(() => {
    if (initialToken === undefined) return;
    let current = true;
    void request(initialToken, { kind: "check" }).then((result) => {
      if (!current || result.ok || result.httpStatus !== 401) return;
      storeToken(undefined);
      setToken(undefined);
      setMessage({ kind: "error", text: `The remembered token was refused (${result.error}).` });
    });
    return () => {
      current = false;
    };
  }, [initialToken, request, storeToken]);

  const readOnly = token === undefined;
  const done = status?.status === "done";
  const paused = status?.status === "paused";

  async function run(action: AdminAction, success: string): Promise<void> {
    if (token === undefined) return;
    setBusy(true);
    const result = await request(token, action);
    setBusy(false);
    if (result.ok) {
      setMessage({ kind: "ok", text: success });
      return;
    }
    if (result.httpStatus === 401) {
      storeToken(undefined);
      setToken(undefined);
      setMessage({ kind: "error", text: `The server refused the token (${result.error}); the dashboard is read-only again.` });
      return;
    }
    setMessage({ kind: "error", text: result.error });
  }

  async function unlock(event: FormEvent<HTMLFormElement>): Promise<void> {
    event.preventDefault();
    const candidate = draft.trim();
    if (candidate === "") return;
    setBusy(true);
    const result = await request(candidate, { kind: "check" });
    setBusy(false);
    if (!result.ok) {
      setMessage({ kind: "error", text: result.httpStatus === 401 ? `The server refused this token: ${result.error}.` : result.error });
      return;
    }
    storeToken(candidate);
    setToken(candidate);
    setDraft("");
    setMessage({ kind: "ok", text: "Token accepted: the controls are yours." });
  }

  function forget(): void {
    storeToken(undefined);
    setToken(undefined);
    setMessage(undefined);
  }

  async function setTarget(event: FormEvent<HTMLFormElement>): Promise<void> {
    event.preventDefault();
    const text = (targetDraft ?? "").trim();
    const rounds = text === "" ? null : Number(text);
    if (rounds !== null && !(Number.isInteger(rounds) && rounds >= 1)) {
      setMessage({ kind: "error", text: "The target must be a whole number of rounds, at least 1 (empty: no round limit)." });
      return;
    }
    await run({ kind: "target", body: { rounds } }, rounds === null ? "Round limit removed." : `Target set to ${rounds} rounds.`);
    setTargetDraft(undefined);
  }

  const disabled = readOnly || busy || done || status === undefined;
  const targetValue = targetDraft ?? (status?.targetRounds === undefined ? "" : String(status.targetRounds));
  const readOnlyTitle = readOnly ? "Read-only: enter the admin token first" : undefined;
  return (
    <div className="controls" data-testid="controls">
      <div className="controls-mode">
        <span className={`pill ${readOnly ? "pill-readonly" : "pill-operator"}`} data-testid="mode">
          {readOnly ? "read-only" : "operator"}
        </span>
        {readOnly ? (
          <span className="muted">Controls need the admin token that the server printed when it started.</span>
        ) : (
          <button type="button" className="link" onClick={forget}>
            Forget token
          </button>
        )}
      </div>
      {readOnly && (
        <form className="row" onSubmit={(event) => void unlock(event)}>
          <input
            type="password"
            aria-label="Admin token"
            placeholder="Admin token"
            autoComplete="off"
            value={draft}
            onChange={(event) => setDraft(event.target.value)}
          />
          <button type="submit" disabled={busy || draft.trim() === ""}>
            Unlock
          </button>
        </form>
      )}
      <div className="row">
        <button
          type="button"
          disabled={disabled}
          title={readOnlyTitle}
          onClick={() => void (paused ? run({ kind: "resume" }, "Resumed.") : run({ kind: "pause" }, "Paused: the round in progress finishes, no new one opens."))}
        >
          {paused ? "Resume" : "Pause"}
        </button>
        {confirmStop ? (
          <>
            <button
              type="button"
              className="danger"
              disabled={disabled}
              onClick={() => {
                setConfirmStop(false);
                void run({ kind: "stop", body: {} }, "Stopped. The workers were told to stop.");
              }}
            >
              Stop for good
            </button>
            <button type="button" onClick={() => setConfirmStop(false)}>
              Cancel
            </button>
          </>
        ) : (
          <button type="button" className="danger-outline" disabled={disabled} title={readOnlyTitle} onClick={() => setConfirmStop(true)}>
            Stop…
          </button>
        )}
      </div>
      <form className="row" onSubmit={(event) => void setTarget(event)}>
        <label className="inline">
          Target rounds
          <input
            type="number"
            min={1}
            step={1}
            inputMode="numeric"
            aria-label="Target rounds"
            disabled={disabled}
            value={targetValue}
            placeholder="no limit"
            onChange={(event) => setTargetDraft(event.target.value)}
          />
        </label>
        <button type="submit" disabled={disabled || targetDraft === undefined} title={readOnlyTitle}>
          Set target
        </button>
      </form>
      {message !== undefined && (
        <p className={`message message-${message.kind}`} role={message.kind === "error" ? "alert" : "status"} data-testid="controls-message">
          {message.text}
        </p>
      )}
      <div className="download">
        <span className="muted">Model{status === undefined ? "" : ` (round ${status.stateRound})`}:</span>{" "}
        <a href="/api/model/model.json" download="model.json">
          model.json
        </a>{" "}
        +{" "}
        <a href="/api/model/weights.bin" download="weights.bin">
          weights.bin
        </a>
        <span className="muted"> (TF.js format; keep both in one folder)</span>
      </div>
    </div>
  );
}
