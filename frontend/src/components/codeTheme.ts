/**
 * Syntax colours for the code editor with at least 4.5:1 contrast (WCAG AA) on the editor's
 * background and its active line, in both themes. The dark one is One Dark's palette with the
 * few colours that fell short (comments, keywords, names) lightened; the light one is
 * CodeMirror's default with its too-pale colours darkened.
 */
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import type { Extension } from "@codemirror/state";
import { EditorView } from "@codemirror/view";
import { oneDarkTheme } from "@codemirror/theme-one-dark";
import { tags as t } from "@lezer/highlight";

const dark = {
  chalky: "#e5c07b",
  coral: "#ef8891",
  cyan: "#56b6c2",
  ivory: "#abb2bf",
  stone: "#98a2b3",
  malibu: "#61afef",
  sage: "#98c379",
  whiskey: "#d19a66",
  violet: "#d291e4",
};

const darkHighlight = HighlightStyle.define([
  { tag: t.keyword, color: dark.violet },
  { tag: [t.name, t.deleted, t.character, t.propertyName, t.macroName], color: dark.coral },
  { tag: [t.function(t.variableName), t.labelName], color: dark.malibu },
  { tag: [t.color, t.constant(t.name), t.standard(t.name)], color: dark.whiskey },
  { tag: [t.definition(t.name), t.separator], color: dark.ivory },
  {
    tag: [t.typeName, t.className, t.number, t.changed, t.annotation, t.modifier, t.self, t.namespace],
    color: dark.chalky,
  },
  {
    tag: [t.operator, t.operatorKeyword, t.url, t.escape, t.regexp, t.link, t.special(t.string)],
    color: dark.cyan,
  },
  { tag: [t.meta, t.comment], color: dark.stone },
  { tag: t.strong, fontWeight: "bold" },
  { tag: t.emphasis, fontStyle: "italic" },
  { tag: t.strikethrough, textDecoration: "line-through" },
  { tag: t.link, color: dark.stone, textDecoration: "underline" },
  { tag: t.heading, fontWeight: "bold", color: dark.coral },
  { tag: [t.atom, t.bool, t.special(t.variableName)], color: dark.whiskey },
  { tag: [t.processingInstruction, t.string, t.inserted], color: dark.sage },
  { tag: t.invalid, color: "#ffffff" },
]);

const lightHighlight = HighlightStyle.define([
  { tag: t.meta, color: "#404740" },
  { tag: t.link, textDecoration: "underline" },
  { tag: t.heading, textDecoration: "underline", fontWeight: "bold" },
  { tag: t.emphasis, fontStyle: "italic" },
  { tag: t.strong, fontWeight: "bold" },
  { tag: t.strikethrough, textDecoration: "line-through" },
  { tag: t.keyword, color: "#770088" },
  { tag: [t.atom, t.bool, t.url, t.contentSeparator, t.labelName], color: "#221199" },
  { tag: [t.literal, t.inserted], color: "#116644" },
  { tag: [t.string, t.deleted], color: "#aa1111" },
  { tag: [t.regexp, t.escape, t.special(t.string)], color: "#b02e00" },
  { tag: t.definition(t.variableName), color: "#0000ff" },
  { tag: t.local(t.variableName), color: "#3300aa" },
  { tag: [t.typeName, t.namespace], color: "#006644" },
  { tag: t.className, color: "#116677" },
  { tag: [t.special(t.variableName), t.macroName], color: "#225566" },
  { tag: t.definition(t.propertyName), color: "#0000cc" },
  { tag: t.comment, color: "#8a4b00" },
  { tag: t.invalid, color: "#c00000" },
]);

/** The active line and gutters stay dark/light enough for the colours above. */
const darkChrome = EditorView.theme(
  {
    ".cm-activeLine": { backgroundColor: "#2c313a80" },
    ".cm-gutters": { color: dark.stone },
    ".cm-activeLineGutter": { color: dark.ivory },
  },
  { dark: true },
);

const lightChrome = EditorView.theme({
  ".cm-activeLine": { backgroundColor: "#eef3f8" },
  ".cm-gutters": { color: "#596275", backgroundColor: "#f3f4f8" },
});

export function editorTheme(theme: "dark" | "light"): Extension[] {
  return theme === "dark"
    ? [oneDarkTheme, darkChrome, syntaxHighlighting(darkHighlight)]
    : [lightChrome, syntaxHighlighting(lightHighlight)];
}
