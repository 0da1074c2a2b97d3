/** CodeMirror 6 editor for one file (syntax by file extension, dark/light theme). */
import { useEffect, useRef } from "react";
import { basicSetup } from "codemirror";
import { EditorState, type Extension } from "@codemirror/state";
import { EditorView, keymap } from "@codemirror/view";
import { javascript } from "@codemirror/lang-javascript";
import { css } from "@codemirror/lang-css";
import { html } from "@codemirror/lang-html";
import { json } from "@codemirror/lang-json";
import { markdown } from "@codemirror/lang-markdown";
import type { Theme } from "../theme";
import { editorTheme } from "./codeTheme";

function language(path: string): Extension[] {
  const ext = path.slice(path.lastIndexOf(".") + 1).toLowerCase();
  switch (ext) {
    case "ts":
      return [javascript({ typescript: true })];
    case "tsx":
      return [javascript({ typescript: true, jsx: true })];
    case "js":
    case "mjs":
    case "cjs":
      return [javascript()];
    case "jsx":
      return [javascript({ jsx: true })];
    case "css":
      return [css()];
    case "html":
    case "htm":
    case "svg":
      return [html()];
    case "json":
      return [json()];
    case "md":
      return [markdown()];
    default:
      return [];
  }
}

interface Props {
  path: string;
  /** Initial content; a new value (e.g. after reload) replaces the document. */
  content: string;
  version: number;
  theme: Theme;
  onChange: (content: string) => void;
  onSave: () => void;
  /** View only: the document cannot be changed (selection and copy still work). */
  readOnly?: boolean;
}

export function CodeEditor({ path, content, version, theme, onChange, onSave, readOnly = false }: Props) {
  const hostRef = useRef<HTMLDivElement>(null);
  const onChangeRef = useRef(onChange);
  const onSaveRef = useRef(onSave);
  useEffect(() => {
    onChangeRef.current = onChange;
    onSaveRef.current = onSave;
  });

  useEffect(() => {
    const host = hostRef.current;
    if (!host) return;
    const view = new EditorView({
      parent: host,
      state: EditorState.create({
        doc: content,
        extensions: [
          keymap.of([
            {
              key: "Mod-s",
              preventDefault: true,
              run: () => {
                onSaveRef.current();
                return true;
              },
            },
          ]),
          basicSetup,
          EditorState.readOnly.of(readOnly),
          ...language(path),
          ...editorTheme(theme),
          // Screen readers name the editing area after the file (axe: aria-input-field-name).
          EditorView.contentAttributes.of({ "aria-label": `Contents of ${path}` }),
          EditorView.updateListener.of((update) => {
            if (update.docChanged) onChangeRef.current(update.state.doc.toString());
          }),
          EditorView.theme({ "&": { height: "100%" }, ".cm-scroller": { fontFamily: "var(--mono)" } }),
        ],
      }),
    });
    return () => view.destroy();
    // The document is recreated when the file, its loaded version, the theme or read-only changes.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [path, version, theme, readOnly]);

  return <div className="code-editor" ref={hostRef} data-testid="code-editor" data-readonly={readOnly || undefined} />;
}
