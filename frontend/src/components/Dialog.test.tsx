// @vitest-environment jsdom
import { useState } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { byTestId, cleanup, click, press, render } from "../test/dom";
import { ConfirmDialog, Modal } from "./Dialog";

afterEach(cleanup);

function Page({ onClose = () => undefined }: { onClose?: () => void }) {
  const [open, setOpen] = useState(false);
  const [confirming, setConfirming] = useState(false);
  return (
    <>
      <button data-testid="opener" onClick={() => setOpen(true)}>
        Open
      </button>
      {open && (
        <Modal
          label="Test"
          testId="modal"
          escape={!confirming}
          onClose={() => {
            onClose();
            setOpen(false);
          }}
        >
          <button data-testid="first">First</button>
          <input data-testid="middle" aria-label="middle" />
          <button data-testid="last" onClick={() => setConfirming(true)}>
            Last
          </button>
        </Modal>
      )}
      {confirming && (
        <ConfirmDialog title="Sure?" body="Really." confirmLabel="Yes" onConfirm={() => setConfirming(false)} onCancel={() => setConfirming(false)} />
      )}
    </>
  );
}

describe("Modal focus", () => {
  it("moves focus in, keeps Tab inside, closes on Escape and gives focus back", () => {
    const onClose = vi.fn();
    render(<Page onClose={onClose} />);
    const opener = byTestId("opener");
    opener.focus();
    click(opener);
    expect(document.activeElement).toBe(byTestId("first"));
    byTestId("last").focus();
    press("Tab");
    expect(document.activeElement).toBe(byTestId("first"));
    press("Tab", document.activeElement ?? document.body, true);
    expect(document.activeElement).toBe(byTestId("last"));
    // Focus lost to the page (e.g. the focused row was removed): Tab brings it back in.
    (document.activeElement as HTMLElement).blur();
    press("Tab", document.body);
    expect(document.activeElement).toBe(byTestId("first"));
    press("Escape");
    expect(onClose).toHaveBeenCalledTimes(1);
    expect(document.activeElement).toBe(opener);
  });

  it("a dialog stacked on top owns Tab and Escape, then focus returns below", () => {
    const onClose = vi.fn();
    render(<Page onClose={onClose} />);
    click(byTestId("opener"));
    const last = byTestId("last");
    last.focus();
    click(last);
    const confirm = byTestId("confirm-dialog");
    expect(confirm.contains(document.activeElement)).toBe(true);
    expect(document.activeElement).toBe(byTestId("dialog-confirm"));
    press("Tab");
    expect(document.activeElement).toBe(byTestId("dialog-cancel"));
    press("Escape");
    expect(onClose).not.toHaveBeenCalled();
    expect(document.querySelector('[data-testid="confirm-dialog"]')).toBeNull();
    expect(document.activeElement).toBe(last);
  });

  it("a destructive confirmation starts on Cancel, so Enter does not destroy", () => {
    const onConfirm = vi.fn();
    const onCancel = vi.fn();
    render(
      <ConfirmDialog title="Delete it?" body="Gone for good." confirmLabel="Delete" danger onConfirm={onConfirm} onCancel={onCancel} />,
    );
    expect(document.activeElement).toBe(byTestId("dialog-cancel"));
    (document.activeElement as HTMLButtonElement).click(); // what Enter on a focused button does
    expect(onCancel).toHaveBeenCalledTimes(1);
    expect(onConfirm).not.toHaveBeenCalled();
  });
});
