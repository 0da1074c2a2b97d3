/**
 * Generative-UI blocks inside assistant text: fenced ```ui {json}``` blocks that the agent
 * writes to show progress steps or option cards. They are cut out of the Markdown and
 * rendered as components; while a block is still streaming (no closing fence yet) it is
 * hidden so that half-written JSON never flashes on screen.
 */

export interface UiStep {
  title: string;
  status: "done" | "active" | "todo" | "error";
  detail?: string;
}

export interface UiCard {
  title: string;
  description?: string;
  badge?: string;
}

export type UiBlock =
  | { kind: "steps"; title?: string; steps: UiStep[] }
  | { kind: "cards"; title?: string; cards: UiCard[] }
  | { kind: "raw"; json: string };

export interface ParsedText {
  /** The Markdown with every ui block removed. */
  markdown: string;
  blocks: UiBlock[];
}

const FENCE = /```ui[ \t]*\n([\s\S]*?)\n?```[ \t]*(?:\n|$)/g;
const OPEN_FENCE = /```ui[ \t]*(?:\n[\s\S]*)?$/;

function str(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

const STEP_STATUSES: readonly UiStep["status"][] = ["done", "active", "todo", "error"];

function toStep(item: unknown): UiStep | undefined {
  if (typeof item === "string") return { title: item, status: "todo" };
  if (typeof item !== "object" || item === null) return undefined;
  const rec = item as Record<string, unknown>;
  const title = str(rec.title) ?? str(rec.label) ?? str(rec.text);
  if (title === undefined) return undefined;
  const rawStatus = str(rec.status);
  const status = STEP_STATUSES.find((s) => s === rawStatus) ?? (rec.done === true ? "done" : "todo");
  const detail = str(rec.detail) ?? str(rec.description);
  return detail === undefined ? { title, status } : { title, status, detail };
}

function toCard(item: unknown): UiCard | undefined {
  if (typeof item !== "object" || item === null) return undefined;
  const rec = item as Record<string, unknown>;
  const title = str(rec.title) ?? str(rec.label);
  if (title === undefined) return undefined;
  const card: UiCard = { title };
  const description = str(rec.description) ?? str(rec.text);
  const badge = str(rec.badge) ?? str(rec.tag);
  if (description !== undefined) card.description = description;
  if (badge !== undefined) card.badge = badge;
  return card;
}

/** Interpret one block body; anything unrecognised becomes a `raw` block. */
export function parseUiBlock(body: string): UiBlock {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { kind: "raw", json: body };
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const rec = value as Record<string, unknown>;
    const title = str(rec.title);
    const type = str(rec.type) ?? str(rec.kind);
    if ((type === "steps" || type === undefined) && Array.isArray(rec.steps)) {
      const steps = rec.steps.map(toStep).filter((s): s is UiStep => s !== undefined);
      if (steps.length > 0) return title ? { kind: "steps", title, steps } : { kind: "steps", steps };
    }
    if ((type === "cards" || type === undefined) && Array.isArray(rec.cards)) {
      const cards = rec.cards.map(toCard).filter((c): c is UiCard => c !== undefined);
      if (cards.length > 0) return title ? { kind: "cards", title, cards } : { kind: "cards", cards };
    }
  }
  return { kind: "raw", json: JSON.stringify(value, null, 2) };
}

/** Split assistant text into Markdown and ui blocks (an unterminated block is hidden). */
export function parseAssistantText(text: string): ParsedText {
  const blocks: UiBlock[] = [];
  let markdown = text.replace(FENCE, (_match, body: string) => {
    blocks.push(parseUiBlock(body.trim()));
    return "";
  });
  markdown = markdown.replace(OPEN_FENCE, "");
  return { markdown: markdown.replace(/\n{3,}/g, "\n\n"), blocks };
}
