/** Modal dialogs (confirmation with optional third action). */
import { useEffect, useRef, useState, type ReactNode } from "react";

interface ConfirmProps {
  title: string;
  body: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  onConfirm: () => void;
  onCancel: () => void;
  extra?: { label: string; onClick: () => void; testId?: string };
  testId?: string;
}

export function ConfirmDialog({ title, body, confirmLabel, danger, onConfirm, onCancel, extra, testId }: ConfirmProps) {
  const confirmRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    confirmRef.current?.focus();
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onCancel();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onCancel]);
  return (
    <div className="dialog-backdrop" onClick={onCancel}>
      <div
        className="dialog card"
        role="dialog"
        aria-modal="true"
        aria-label={title}
        data-testid={testId ?? "confirm-dialog"}
        onClick={(e) => e.stopPropagation()}
      >
        <h3>{title}</h3>
        <div className="dialog-body">{body}</div>
        <div className="dialog-actions">
          <button className="btn" onClick={onCancel} data-testid="dialog-cancel">
            Cancel
          </button>
          {extra && (
            <button className="btn" onClick={extra.onClick} data-testid={extra.testId}>
              {extra.label}
            </button>
          )}
          <button
            ref={confirmRef}
            className={`btn ${danger ? "danger-solid" : "primary"}`}
            onClick={onConfirm}
            data-testid="dialog-confirm"
          >
            {confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}

interface PromptProps {
  title: string;
  label: string;
  initial: string;
  confirmLabel: string;
  onConfirm: (value: string) => void;
  onCancel: () => void;
}

/** A dialog asking for one line of text (a file name, a path). */
export function PromptDialog({ title, label, initial, confirmLabel, onConfirm, onCancel }: PromptProps) {
  const [value, setValue] = useState(initial);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onCancel();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onCancel]);
  return (
    <div className="dialog-backdrop" onClick={onCancel}>
      <form
        className="dialog card"
        role="dialog"
        aria-modal="true"
        aria-label={title}
        data-testid="prompt-dialog"
        onClick={(e) => e.stopPropagation()}
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) onConfirm(value.trim());
        }}
      >
        <h3>{title}</h3>
        <label className="dialog-body">
          <span className="muted small">{label}</span>
          <input
            autoFocus
            className="text-input"
            data-testid="prompt-input"
            value={value}
            onChange={(e) => setValue(e.target.value)}
          />
        </label>
        <div className="dialog-actions">
          <button type="button" className="btn" onClick={onCancel} data-testid="dialog-cancel">
            Cancel
          </button>
          <button type="submit" className="btn primary" data-testid="dialog-confirm">
            {confirmLabel}
          </button>
        </div>
      </form>
    </div>
  );
}
