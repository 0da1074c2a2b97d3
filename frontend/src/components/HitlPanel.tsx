/** Approval panel for a paused tool call (HITL): approve, edit the arguments, or reject. */
import { useState } from "react";
import { PauseIcon } from "./Icons";
import type { DecisionType, HitlDecision, HitlPending } from "../protocol/messages";

interface Props {
  pending: HitlPending;
  onSubmit: (decisions: HitlDecision[]) => void;
}

/** Parse edited arguments: an object, or an error message for people. */
export function parseArgs(text: string): { args: Record<string, unknown> } | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { error: `Not valid JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return { error: "The arguments must be a JSON object ({…})." };
  }
  return { args: value as Record<string, unknown> };
}

export function HitlPanel({ pending, onSubmit }: Props) {
  const actions = pending.request.action_requests;
  const [edits, setEdits] = useState<Record<number, string>>({});
  const [message, setMessage] = useState("");

  const allowed = (idx: number): DecisionType[] => {
    const name = actions[idx]?.name;
    const cfg = pending.request.review_configs.find((c) => c.action_name === name);
    return cfg?.allowed_decisions ?? ["approve", "edit", "reject"];
  };

  const parsed = actions.map((_, idx) => {
    const text = edits[idx];
    return text === undefined ? undefined : parseArgs(text);
  });
  const invalid = parsed.some((p) => p !== undefined && "error" in p);

  const approve = () => {
    if (invalid) return;
    onSubmit(
      actions.map((action, idx): HitlDecision => {
        const p = parsed[idx];
        if (p && "args" in p) return { type: "edit", edited_action: { name: action.name, args: p.args } };
        return { type: "approve" };
      }),
    );
  };
  const reject = () => {
    const text = message.trim() || "Rejected by user";
    onSubmit(actions.map((): HitlDecision => ({ type: "reject", message: text })));
  };

  return (
    <div className="hitl-panel card" data-testid="hitl-panel" role="region" aria-label="Approval needed">
      <div className="hitl-title">
        <PauseIcon /> Approval needed
      </div>
      <p className="muted small">The agent wants to run {actions.length === 1 ? "this action" : "these actions"}:</p>
      {actions.map((action, idx) => {
        const editing = edits[idx] !== undefined;
        const p = parsed[idx];
        return (
          <div className="hitl-action" key={idx} data-testid="hitl-action">
            <div className="hitl-action-head">
              <code className="tool-name">{action.name}</code>
              {allowed(idx).includes("edit") && (
                <button
                  className="link-btn"
                  data-testid="hitl-edit"
                  onClick={() =>
                    setEdits((prev) => {
                      const next = { ...prev };
                      if (editing) delete next[idx];
                      else next[idx] = JSON.stringify(action.args, null, 2);
                      return next;
                    })
                  }
                >
                  {editing ? "Undo edit" : "Edit arguments"}
                </button>
              )}
            </div>
            {action.description && <div className="small">{action.description}</div>}
            {editing ? (
              <>
                <textarea
                  className="code-input"
                  data-testid="hitl-edit-args"
                  aria-label={`Arguments of ${action.name}`}
                  value={edits[idx]}
                  rows={6}
                  spellCheck={false}
                  onChange={(e) => setEdits((prev) => ({ ...prev, [idx]: e.target.value }))}
                />
                {p && "error" in p && (
                  <div className="form-error small" data-testid="hitl-edit-error">
                    {p.error}
                  </div>
                )}
              </>
            ) : (
              <pre className="hitl-args">{JSON.stringify(action.args, null, 2)}</pre>
            )}
          </div>
        );
      })}
      <input
        className="text-input"
        data-testid="hitl-reject-message"
        placeholder="Reason for rejecting (optional, sent to the agent)"
        value={message}
        onChange={(e) => setMessage(e.target.value)}
        aria-label="Reject message"
      />
      <div className="hitl-buttons">
        <button className="btn danger" data-testid="hitl-reject" onClick={reject}>
          Reject
        </button>
        <button className="btn primary" data-testid="hitl-approve" disabled={invalid} onClick={approve}>
          {Object.keys(edits).length > 0 ? "Approve with edits" : "Approve"}
        </button>
      </div>
    </div>
  );
}
