/**
 * Roving tabindex for tab lists (WAI-ARIA tabs pattern): only the selected tab is in the Tab
 * order; Left/Right (and Up/Down), Home and End move the focus along the list and select.
 */
import type { KeyboardEvent } from "react";

/** The index a key moves to from `index` in a list of `count` tabs, or undefined for other keys. */
export function rovingTarget(key: string, index: number, count: number): number | undefined {
  if (count === 0) return undefined;
  switch (key) {
    case "ArrowRight":
    case "ArrowDown":
      return (index + 1) % count;
    case "ArrowLeft":
    case "ArrowUp":
      return (index - 1 + count) % count;
    case "Home":
      return 0;
    case "End":
      return count - 1;
    default:
      return undefined;
  }
}

export interface TabProps {
  role: "tab";
  id: string;
  tabIndex: number;
  "aria-selected": boolean;
  "aria-controls"?: string;
  onKeyDown: (e: KeyboardEvent<HTMLElement>) => void;
  onClick: () => void;
}

/**
 * Props for the tab `key` of a list `keys` whose selection is `active`. The focus follows
 * the arrow keys (the tab with the same index in the closest `[role=tablist]` gets it).
 */
export function tabProps<T extends string>(
  idPrefix: string,
  keys: readonly T[],
  active: T | undefined,
  select: (key: T) => void,
  key: T,
  controls?: string,
): TabProps {
  const selected = key === active || (active === undefined && key === keys[0]);
  return {
    role: "tab",
    id: `${idPrefix}-${key}`,
    tabIndex: selected ? 0 : -1,
    "aria-selected": key === active,
    ...(controls ? { "aria-controls": controls } : {}),
    onClick: () => select(key),
    onKeyDown: (e) => {
      const target = rovingTarget(e.key, keys.indexOf(key), keys.length);
      const next = target === undefined ? undefined : keys[target];
      if (target === undefined || next === undefined) return;
      e.preventDefault();
      select(next);
      const list = e.currentTarget.closest("[role=tablist]");
      const tabs = list ? Array.from(list.querySelectorAll<HTMLElement>("[role=tab]")) : [];
      tabs[target]?.focus();
    },
  };
}
