/**
 * Click-to-select: the preview's bridge (`public/amicable-runtime.js` in the template) reports
 * the element picked in "Select" mode as `amicable_element_selected`; the editor checks and
 * cuts it here (the preview is the user's app: its text is data, never trusted), shows it as a
 * chip in the composer and sends it with the next prompt as `ui_context.selected_element`.
 */
import type { SelectedElement } from "./protocol/types.gen";

/** The protocol's limits (libs/protocol `MAX_SELECTION_CHARS`); text is cut, the rest refused. */
export const SELECTION_LIMITS = { tag: 64, selector: 1000, text: 500, source: 500 } as const;
/** Editor -> preview: turn Select mode on or off. */
export const SELECT_MODE_MESSAGE = "amicable_select_mode";
/** Preview -> editor: the element picked. */
export const SELECTED_MESSAGE = "amicable_element_selected";
/** Preview -> editor: the user left Select mode in the preview (Escape). */
export const SELECT_CANCELLED_MESSAGE = "amicable_select_cancelled";

const TAG = /^[a-z][a-z0-9-]*$/;
// "src/App.tsx:12" or "src/App.tsx:12:5": a relative project path, then line (and column).
const SOURCE = /^(?!\/)(?!.*\.\.)[\w@./ -]+:\d+(?::\d+)?$/;

/** The picked element of a bridge message, checked; undefined when it is not a valid one. */
export function normaliseSelection(payload: unknown): SelectedElement | undefined {
  if (typeof payload !== "object" || payload === null) return undefined;
  const rec = payload as Record<string, unknown>;
  const tag = typeof rec.tag === "string" ? rec.tag.toLowerCase() : "";
  const selector = typeof rec.selector === "string" ? rec.selector.trim() : "";
  if (!TAG.test(tag) || tag.length > SELECTION_LIMITS.tag) return undefined;
  if (selector === "" || selector.length > SELECTION_LIMITS.selector) return undefined;
  const out: SelectedElement = { tag, selector };
  if (typeof rec.text === "string") {
    const text = rec.text.replace(/\s+/g, " ").trim();
    if (text) out.text = text.length > SELECTION_LIMITS.text ? `${text.slice(0, SELECTION_LIMITS.text - 1)}…` : text;
  }
  if (typeof rec.source === "string" && rec.source.length <= SELECTION_LIMITS.source && SOURCE.test(rec.source))
    out.source = rec.source;
  return out;
}

/** The chip's words: `<h1> “Hello from…”`. */
export function selectionLabel(selected: SelectedElement, maxText = 40): string {
  const text = selected.text
    ? ` “${selected.text.length > maxText ? `${selected.text.slice(0, maxText - 1)}…` : selected.text}”`
    : "";
  return `<${selected.tag}>${text}`;
}
