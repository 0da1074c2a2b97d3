// @vitest-environment jsdom
import { EditorView } from "@codemirror/view";
import { act } from "react";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { allTestId, byTestId, cleanup, click, flush, press, queryTestId, render, stubFetch, waitForTestId, type FetchCall } from "../test/dom";
import { CodePane } from "./CodePane";

/** A workspace behind the stubbed file API: sha-checked writes like the agent's. */
let files: Map<string, string>;
let calls: FetchCall[];
const DIRS = ["/src", "/node_modules", "/dist", "/.next"];

function sha(text: string): string {
  return `sha-${text.length}-${text}`;
}

function entries(dir: string) {
  const prefix = dir === "/" ? "/" : `${dir}/`;
  const names = new Map<string, boolean>();
  for (const d of DIRS) if (d.startsWith(prefix) && !d.slice(prefix.length).includes("/")) names.set(d, true);
  for (const f of files.keys()) if (f.startsWith(prefix) && !f.slice(prefix.length).includes("/")) names.set(f, false);
  return [...names].map(([path, isDir]) => ({ path, name: path.slice(prefix.length), is_dir: isDir }));
}

beforeAll(() => {
  // jsdom has no layout: CodeMirror measures text ranges after typing (no-op rectangles here).
  Range.prototype.getClientRects ??= () => Object.assign([], { item: () => null }) as unknown as DOMRectList;
  Range.prototype.getBoundingClientRect ??= () => new DOMRect();
});

beforeEach(() => {
  files = new Map([
    ["/src/App.tsx", "export const a = 1;\nexport const b = 2;\n"],
    ["/src/main.tsx", "import './App';\n"],
    ["/package.json", "{}\n"],
  ]);
  const routes: Parameters<typeof stubFetch>[0] = {
    "PUT /api/sandbox/p1/write": (call) => {
      const body = call.body as { path: string; content: string; expected_sha256?: string };
      const current = files.get(body.path);
      if (body.expected_sha256 && current !== undefined && sha(current) !== body.expected_sha256) {
        return { status: 409, body: { error: "conflict" } };
      }
      files.set(body.path, body.content);
      return { body: { path: body.path, sha256: sha(body.content) } };
    },
  };
  for (const dir of ["/", ...DIRS]) {
    routes[`GET /api/sandbox/p1/ls?path=${encodeURIComponent(dir)}`] = () => ({ body: { path: dir, entries: entries(dir) } });
  }
  for (const path of ["/src/App.tsx", "/src/main.tsx", "/package.json"]) {
    routes[`GET /api/sandbox/p1/read?path=${encodeURIComponent(path)}`] = () => {
      const content = files.get(path) ?? "";
      return { body: { path, content, sha256: sha(content), is_binary: false } };
    };
  }
  calls = stubFetch(routes);
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

type Writes = { agentWrites?: Record<string, number>; restoreWrites?: Record<string, number> };

function pane(writes: Writes = {}) {
  return <CodePane hidden={false} projectId="p1" agentWrites={writes.agentWrites ?? {}} restoreWrites={writes.restoreWrites ?? {}} theme="dark" />;
}

function treePaths(): string[] {
  return Array.from(document.querySelectorAll<HTMLElement>("[data-path]"))
    .filter((el) => el.closest("[data-testid=file-tree]"))
    .map((el) => el.dataset.path ?? "");
}

async function openFile(path: string) {
  const row = document.querySelector<HTMLElement>(`[data-testid=file-tree] [data-path="${path}"]`);
  if (!row) throw new Error(`no tree row ${path}`);
  click(row);
  await flush();
}

/** Type into the open CodeMirror document (replacing it), as the editor's onChange sees it. */
function typeText(text: string) {
  const content = document.querySelector<HTMLElement>(".cm-content");
  const view = content ? EditorView.findFromDOM(content) : null;
  if (!view) throw new Error("no editor");
  act(() => view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } }));
}

function editorText(): string {
  const content = document.querySelector<HTMLElement>(".cm-content");
  return (content && EditorView.findFromDOM(content)?.state.doc.toString()) ?? "";
}

// CodeMirror in jsdom is slow on a loaded 2-core machine: a generous per-test limit (not a timing check).
describe("CodePane", { timeout: 30_000 }, () => {
  it("hides node_modules and build output until asked", async () => {
    render(pane());
    await waitForTestId("tree-dir");
    expect(treePaths()).toEqual(["/src", "/package.json"]);
    click(byTestId("code-show-hidden"));
    expect(treePaths()).toEqual(["/.next", "/dist", "/node_modules", "/src", "/package.json"]);
    expect(document.querySelector('[data-path="/node_modules"]')?.className).toContain("dim");
  });

  it("keeps several files open as tabs, with their unsaved edits and the arrow keys", async () => {
    render(pane());
    await waitForTestId("tree-dir");
    await openFile("/src");
    await openFile("/src/App.tsx");
    typeText("edited App\n");
    await openFile("/package.json");
    expect(allTestId("code-tab").map((t) => t.dataset.path)).toEqual(["/src/App.tsx", "/package.json"]);
    expect(editorText()).toBe("{}\n");
    expect(byTestId("code-tabs").querySelector(".file-icon")?.textContent).toBe("TSX");
    // Back to App.tsx from the keyboard: the edit is still there, and the tab says unsaved.
    const [app, pkg] = allTestId("code-tab");
    pkg?.focus();
    press("ArrowLeft");
    expect(document.activeElement).toBe(app);
    expect(app?.getAttribute("aria-selected")).toBe("true");
    expect(editorText()).toBe("edited App\n");
    expect(queryTestId("code-dirty")).not.toBeNull();
    // Delete closes the focused tab; the neighbour becomes active.
    press("Delete");
    expect(allTestId("code-tab").map((t) => t.dataset.path)).toEqual(["/package.json"]);
    expect(byTestId("code-path").textContent).toBe("/package.json");
  });

  it("saves with a transient toast (no banner above the editor)", async () => {
    render(pane());
    await waitForTestId("tree-dir");
    await openFile("/package.json");
    typeText('{"name": "x"}\n');
    click(byTestId("code-save"));
    await flush();
    expect(files.get("/package.json")).toBe('{"name": "x"}\n');
    const toast = byTestId("code-message");
    expect(toast.textContent).toBe("Saved /package.json");
    expect(toast.className).toBe("code-toast");
    expect(toast.getAttribute("role")).toBe("status");
  });

  it("on a conflict shows the diff, starts on Cancel, and keeps mine as a copy before loading theirs", async () => {
    render(pane());
    await waitForTestId("tree-dir");
    await openFile("/src");
    await openFile("/src/App.tsx");
    typeText("export const a = 1;\nexport const b = 3;\n");
    files.set("/src/App.tsx", "export const a = 1;\nexport const b = 2;\nexport const c = 4;\n"); // the agent
    click(byTestId("code-save"));
    await flush();
    const dialog = await waitForTestId("conflict-dialog");
    expect(document.activeElement).toBe(byTestId("dialog-cancel"));
    const diff = await waitForTestId("conflict-diff");
    expect(Array.from(diff.querySelectorAll(".diff-del")).map((l) => l.textContent)).toEqual([
      "− export const b = 2;\n",
      "− export const c = 4;\n",
    ]);
    expect(Array.from(diff.querySelectorAll(".diff-add")).map((l) => l.textContent)).toEqual(["+ export const b = 3;\n"]);
    click(byTestId("conflict-copy", dialog));
    await flush();
    await flush();
    expect(files.get("/src/App.mine.tsx")).toBe("export const a = 1;\nexport const b = 3;\n");
    expect(files.get("/src/App.tsx")).toBe("export const a = 1;\nexport const b = 2;\nexport const c = 4;\n");
    expect(queryTestId("conflict-dialog")).toBeNull();
    expect(editorText()).toBe("export const a = 1;\nexport const b = 2;\nexport const c = 4;\n");
    expect(queryTestId("code-dirty")).toBeNull();
    expect(byTestId("code-message").textContent).toBe("Your version is saved as App.mine.tsx");
    // The copy was written without a sha (a new file), the original was never overwritten.
    const writes = calls.filter((c) => c.method === "PUT").map((c) => (c.body as { path: string }).path);
    expect(writes).toEqual(["/src/App.tsx", "/src/App.mine.tsx"]);
  });

  it("tells a History restore from the agent's change", async () => {
    const view = render(pane());
    await waitForTestId("tree-dir");
    await openFile("/package.json");
    view.rerender(pane({ restoreWrites: { "/package.json": 1 } }));
    const banner = byTestId("code-agent-changed");
    expect(banner.textContent).toContain("This file was restored from History.");
    expect(banner.textContent).not.toContain("agent");
    view.rerender(pane({ restoreWrites: { "/package.json": 1 }, agentWrites: { "/package.json": 1 } }));
    expect(byTestId("code-agent-changed").textContent).toContain("The agent changed this file.");
    click(byTestId("code-reload"));
    await flush();
    expect(queryTestId("code-agent-changed")).toBeNull();
  });
});
