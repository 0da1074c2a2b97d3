/** Modal dialogs: the shared shell, a confirmation (with optional third action), a prompt. */
import { useEffect, useRef, useState, type FormEvent, type ReactNode } from "react";

interface ModalProps {
  label: string;
  testId: string;
  className?: string;
  onClose: () => void;
  /** Escape closes it (off while a dialog stacked on top of it is open). */
  escape?: boolean;
  /** Render the dialog as a form with this submit handler. */
  onSubmit?: (e: FormEvent) => void;
  children: ReactNode;
}

/** The shell every dialog shares: backdrop (a click on it closes), dialog role, Escape. */
export function Modal({ label, testId, className, onClose, escape = true, onSubmit, children }: ModalProps) {
  useEffect(() => {
    if (!escape) return;
    const onKey = (e: KeyboardEvent) => e.key === "Escape" && onClose();
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [onClose, escape]);
  const shell = {
    className: className ? `dialog card ${className}` : "dialog card",
    role: "dialog",
    "aria-modal": true,
    "aria-label": label,
    "data-testid": testId,
    onClick: (e: React.MouseEvent) => e.stopPropagation(),
  } as const;
  return (
    <div className="dialog-backdrop" onClick={onClose}>
      {onSubmit ? (
        <form {...shell} onSubmit={onSubmit}>
          {children}
        </form>
      ) : (
        <div {...shell}>{children}</div>
      )}
    </div>
  );
}

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
  useEffect(() => confirmRef.current?.focus(), []);
  return (
    <Modal label={title} testId={testId ?? "confirm-dialog"} onClose={onCancel}>
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
    </Modal>
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
  return (
    <Modal
      label={title}
      testId="prompt-dialog"
      onClose={onCancel}
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
    </Modal>
  );
}
