// @vitest-environment jsdom
import { act } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SelectedElement } from "../protocol/types.gen";
import { normaliseSelection, selectionLabel } from "../selection";
import { initialSession, type SessionState } from "../state/session";
import { byTestId, cleanup, click, queryTestId, render } from "../test/dom";
import { PreviewPane } from "./PreviewPane";
import { SelectionChip } from "./SelectionChip";

const PREVIEW = "http://demo.preview.localhost:8080";
const H1 = { tag: "H1", selector: "#title", text: "  Hello\n  world ", source: "src/App.tsx:4" };

afterEach(cleanup);

describe("a picked element", () => {
  it("is checked and cut before the editor keeps it", () => {
    expect(normaliseSelection(H1)).toEqual({
      tag: "h1",
      selector: "#title",
      text: "Hello world",
      source: "src/App.tsx:4",
    });
    const long = normaliseSelection({ ...H1, text: "x".repeat(900) });
    expect(long?.text).toHaveLength(500);
    expect(long?.text?.endsWith("…")).toBe(true);
    for (const bad of [
      { ...H1, tag: "h1 onclick" },
      { ...H1, tag: "" },
      { ...H1, selector: "" },
      { ...H1, selector: "a".repeat(1001) },
      { ...H1, tag: 1 },
      "h1",
      null,
    ])
      expect(normaliseSelection(bad)).toBeUndefined();
    // A source that is not a project-relative file:line is dropped, the element kept.
    for (const source of ["/etc/passwd:1", "../secret.ts:3", "src/App.tsx", "src/App.tsx:4\nrm -rf", 42])
      expect(normaliseSelection({ ...H1, source })).toEqual({ tag: "h1", selector: "#title", text: "Hello world" });
    expect(selectionLabel({ tag: "h1", selector: "#t", text: "A very long heading that goes on and on" }, 10)).toBe(
      "<h1> “A very lo…”",
    );
  });

  it("shows as a chip that can be removed", () => {
    const onRemove = vi.fn();
    const element: SelectedElement = { tag: "h1", selector: "#title", text: "Hello", source: "src/App.tsx:4" };
    render(<SelectionChip element={element} onRemove={onRemove} />);
    expect(byTestId("selection-chip").textContent).toContain("<h1> “Hello”");
    expect(byTestId("selection-chip").textContent).toContain("src/App.tsx:4");
    click(byTestId("selection-chip-remove"));
    expect(onRemove).toHaveBeenCalledTimes(1);
  });
});

describe("select mode in the preview", () => {
  const state: SessionState = {
    ...initialSession,
    init: {
      url: `${PREVIEW}/`,
      sandbox_id: "sb",
      exists: true,
      app_id: "p1",
      template_id: "vite",
      project: { project_id: "p1", name: "Demo", slug: "demo", template_id: "vite" },
    },
  };

  function pane(selecting: boolean, onSelect = vi.fn(), onSelecting = vi.fn()) {
    const ui = (on: boolean) => (
      <PreviewPane
        hidden={false}
        state={state}
        device="desktop"
        onDevice={() => undefined}
        path="/"
        onPath={() => undefined}
        onRuntimeError={() => undefined}
        selecting={on}
        onSelecting={onSelecting}
        onSelect={onSelect}
      />
    );
    const view = render(ui(selecting));
    const frame = byTestId<HTMLIFrameElement>("preview-frame");
    return { view, frame, onSelect, onSelecting, rerender: (on: boolean) => view.rerender(ui(on)) };
  }

  function post(data: unknown, origin: string, source: Window | null) {
    act(() => {
      window.dispatchEvent(new MessageEvent("message", { data, origin, source }));
    });
  }

  it("takes a pick only from the preview's origin and its own frame", () => {
    const { frame, onSelect, onSelecting } = pane(true);
    const message = { type: "amicable_element_selected", element: H1 };
    post(message, "http://evil.example", frame.contentWindow); // another origin
    post(message, PREVIEW, window); // the right origin claimed by another window
    post(message, "null", frame.contentWindow); // an opaque origin
    expect(onSelect).not.toHaveBeenCalled();
    post({ type: "amicable_element_selected", element: { tag: "<script>", selector: "x" } }, PREVIEW, frame.contentWindow);
    expect(onSelect).not.toHaveBeenCalled();
    post(message, PREVIEW, frame.contentWindow);
    expect(onSelect).toHaveBeenCalledExactlyOnceWith({
      tag: "h1",
      selector: "#title",
      text: "Hello world",
      source: "src/App.tsx:4",
    });
    expect(onSelecting).toHaveBeenLastCalledWith(false);
  });

  it("tells only the preview's origin to enter and leave select mode", () => {
    const { frame, rerender, onSelecting } = pane(false);
    const spy = vi.spyOn(frame.contentWindow!, "postMessage").mockImplementation(() => undefined);
    rerender(true);
    expect(spy).toHaveBeenLastCalledWith({ type: "amicable_select_mode", enabled: true }, PREVIEW);
    rerender(false);
    expect(spy).toHaveBeenLastCalledWith({ type: "amicable_select_mode", enabled: false }, PREVIEW);
    expect(spy.mock.calls.every((call) => (call as unknown[])[1] === PREVIEW)).toBe(true);
    click(byTestId("preview-select"));
    expect(onSelecting).toHaveBeenLastCalledWith(true);
    expect(queryTestId("preview-select")?.getAttribute("aria-pressed")).toBe("false");
  });
});
