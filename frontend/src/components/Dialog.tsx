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

const FOCUSABLE = [
  "a[href]",
  "button:not([disabled])",
  "input:not([disabled]):not([type=hidden])",
  "select:not([disabled])",
  "textarea:not([disabled])",
  "[tabindex]:not([tabindex='-1'])",
].join(",");

function focusables(root: HTMLElement): HTMLElement[] {
  return Array.from(root.querySelectorAll<HTMLElement>(FOCUSABLE)).filter((el) => !el.closest("[hidden]"));
}

/** Open dialogs, innermost last: only that one traps Tab. */
const openDialogs: HTMLElement[] = [];

/**
 * The element that last had the focus. A dialog opened by an async action (Save, then a
 * conflict) finds the focus on <body> because the button was disabled meanwhile; focus goes
 * back to that button, not nowhere.
 */
let lastFocused: HTMLElement | null = null;
if (typeof document !== "undefined") {
  document.addEventListener(
    "focusin",
    (e) => {
      if (e.target instanceof HTMLElement && e.target !== document.body) lastFocused = e.target;
    },
    true,
  );
}

function currentOpener(): HTMLElement | null {
  const active = document.activeElement;
  if (active instanceof HTMLElement && active !== document.body) return active;
  return lastFocused?.isConnected ? lastFocused : null;
}

function focusInto(dialog: HTMLElement): void {
  (focusables(dialog)[0] ?? dialog).focus();
}

/**
 * Moves focus into the dialog (unless a child already took it, e.g. with autoFocus), keeps
 * Tab / Shift+Tab inside it while it is the innermost open dialog, and gives focus back to
 * what had it before (or to the dialog below) when it closes.
 */
function useFocusTrap(ref: React.RefObject<HTMLElement | null>): void {
  // Read during render, i.e. before a child's autoFocus moves the focus.
  const [opener] = useState(currentOpener);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    openDialogs.push(dialog);
    if (!dialog.contains(document.activeElement)) focusInto(dialog);
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== "Tab" || openDialogs.at(-1) !== dialog) return;
      const items = focusables(dialog);
      const first = items[0];
      const last = items.at(-1);
      const active = document.activeElement;
      const outside = !dialog.contains(active);
      if (!first || !last) {
        e.preventDefault();
        dialog.focus();
      } else if (e.shiftKey && (outside || active === first)) {
        e.preventDefault();
        last.focus();
      } else if (!e.shiftKey && (outside || active === last)) {
        e.preventDefault();
        first.focus();
      }
    };
    window.addEventListener("keydown", onKey);
    return () => {
      window.removeEventListener("keydown", onKey);
      openDialogs.splice(openDialogs.indexOf(dialog), 1);
      const below = openDialogs.at(-1);
      if (opener?.isConnected && (!below || below.contains(opener))) opener.focus();
      else if (below) focusInto(below);
    };
  }, [ref, opener]);
}

/**
 * The shell every dialog shares: backdrop (a click on it closes), dialog role, Escape, and
 * focus moved in, trapped, and given back on close.
 */
export function Modal({ label, testId, className, onClose, escape = true, onSubmit, children }: ModalProps) {
  const ref = useRef<HTMLElement>(null);
  useFocusTrap(ref);
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
    tabIndex: -1,
    onClick: (e: React.MouseEvent) => e.stopPropagation(),
  } as const;
  return (
    <div className="dialog-backdrop" onClick={onClose}>
      {onSubmit ? (
        <form {...shell} ref={ref as React.RefObject<HTMLFormElement>} onSubmit={onSubmit}>
          {children}
        </form>
      ) : (
        <div {...shell} ref={ref as React.RefObject<HTMLDivElement>}>
          {children}
        </div>
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
  const cancelRef = useRef<HTMLButtonElement>(null);
  // A destructive confirmation starts on Cancel, so Enter (or a stray Space) keeps things as they are.
  useEffect(() => (danger ? cancelRef : confirmRef).current?.focus(), [danger]);
  return (
    <Modal label={title} testId={testId ?? "confirm-dialog"} onClose={onCancel}>
      <h3>{title}</h3>
      <div className="dialog-body">{body}</div>
      <div className="dialog-actions">
        <button ref={cancelRef} className="btn" onClick={onCancel} data-testid="dialog-cancel">
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
