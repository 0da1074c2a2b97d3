// @vitest-environment jsdom
import { useState } from "react";
import { afterEach, describe, expect, it } from "vitest";
import { allTestId, cleanup, press, render } from "../test/dom";
import { rovingTarget, tabProps } from "./roving";

afterEach(cleanup);

describe("rovingTarget", () => {
  it("wraps around with the arrows and jumps with Home/End", () => {
    expect(rovingTarget("ArrowRight", 2, 3)).toBe(0);
    expect(rovingTarget("ArrowLeft", 0, 3)).toBe(2);
    expect(rovingTarget("ArrowDown", 0, 3)).toBe(1);
    expect(rovingTarget("ArrowUp", 1, 3)).toBe(0);
    expect(rovingTarget("Home", 2, 3)).toBe(0);
    expect(rovingTarget("End", 0, 3)).toBe(2);
    expect(rovingTarget("Enter", 0, 3)).toBeUndefined();
    expect(rovingTarget("ArrowRight", 0, 0)).toBeUndefined();
  });
});

const KEYS = ["preview", "code", "db"] as const;

function TabList() {
  const [active, setActive] = useState<(typeof KEYS)[number]>("preview");
  return (
    <div role="tablist" aria-label="Views">
      {KEYS.map((k) => (
        <button key={k} data-testid="tab" {...tabProps("t", KEYS, active, setActive, k)}>
          {k}
        </button>
      ))}
    </div>
  );
}

describe("tabProps", () => {
  it("keeps one tab in the Tab order and moves focus and selection with the keys", () => {
    render(<TabList />);
    const tabs = () => allTestId("tab");
    const state = () => tabs().map((t) => [t.tabIndex, t.getAttribute("aria-selected")]);
    expect(state()).toEqual([
      [0, "true"],
      [-1, "false"],
      [-1, "false"],
    ]);
    tabs()[0]?.focus();
    press("ArrowRight");
    expect(document.activeElement).toBe(tabs()[1]);
    expect(state()[1]).toEqual([0, "true"]);
    expect(state()[0]).toEqual([-1, "false"]);
    press("End");
    expect(document.activeElement?.textContent).toBe("db");
    press("ArrowRight");
    expect(document.activeElement?.textContent).toBe("preview");
    press("ArrowLeft");
    expect(document.activeElement?.textContent).toBe("db");
    // Other keys do nothing.
    press("a");
    expect(document.activeElement?.textContent).toBe("db");
    expect(tabs().filter((t) => t.tabIndex === 0)).toHaveLength(1);
  });
});
