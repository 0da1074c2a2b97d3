/**
 * The Code tab: file tree, tabs of open files, CodeMirror editor, save with conflict detection
 * (a diff, "keep mine as a copy"), file operations, and a transient toast for saves.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { ApiError, sandboxFs, type FsEntry } from "../api/http";
import {
  baseName,
  closeTab,
  closeUnder,
  fileIcon,
  isDirty,
  mineCopyPath,
  NO_TABS,
  openTab,
  renameTabs,
  updateTab,
  type OpenFile,
  type Tabs,
} from "../code/files";
import type { Theme } from "../theme";
import { CodeEditor } from "./CodeEditor";
import { ConflictDialog } from "./ConflictDialog";
import { ConfirmDialog, PromptDialog } from "./Dialog";
import { FileTree } from "./FileTree";
import { ReloadIcon } from "./Icons";
import { tabProps } from "./roving";

interface Props {
  hidden: boolean;
  projectId: string;
  /** Writes per path by the agent's tools, and by History restores (told apart in the notice). */
  agentWrites: Record<string, number>;
  restoreWrites?: Record<string, number>;
  theme: Theme;
  /** A viewer's project: browse and read files, change nothing. */
  readOnly?: boolean;
}

type Dialog =
  | { kind: "new"; dirKind: "file" | "dir"; base: string }
  | { kind: "rename"; entry: FsEntry }
  | { kind: "delete"; entry: FsEntry }
  | { kind: "conflict"; path: string };

const TOAST_MS = 2500;

function parentDir(path: string): string {
  const idx = path.lastIndexOf("/");
  return idx <= 0 ? "/" : path.slice(0, idx);
}

function join(dir: string, name: string): string {
  if (name.startsWith("/")) return name;
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

export function CodePane({ hidden, projectId, agentWrites, restoreWrites = {}, theme, readOnly = false }: Props) {
  const fs = useMemo(() => sandboxFs(projectId), [projectId]);
  const [tabs, setTabs] = useState<Tabs>(NO_TABS);
  // The editor's text as typed, per path: Ctrl+S may come before React re-rendered the last keystroke.
  const drafts = useRef<Record<string, string>>({});
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const [toast, setToast] = useState<{ text: string; id: number } | undefined>();
  const [dialog, setDialog] = useState<Dialog | undefined>();
  const [treeToken, setTreeToken] = useState(0);
  const [showHidden, setShowHidden] = useState(false);
  const agentTotal = Object.values(agentWrites).reduce((a, b) => a + b, 0);
  const restoreTotal = Object.values(restoreWrites).reduce((a, b) => a + b, 0);
  const file = tabs.files.find((f) => f.path === tabs.active);

  useEffect(() => {
    if (!toast) return;
    const timer = setTimeout(() => setToast(undefined), TOAST_MS);
    return () => clearTimeout(timer);
  }, [toast]);

  const open = useCallback(
    async (path: string) => {
      try {
        const res = await fs.read(path);
        const loaded: OpenFile = {
          path: res.path,
          saved: res.content ?? "",
          draft: res.content ?? "",
          sha256: res.sha256,
          binary: res.is_binary,
          version: 1,
          agentSeen: agentWrites[res.path] ?? 0,
          restoreSeen: restoreWrites[res.path] ?? 0,
        };
        drafts.current[res.path] = loaded.draft;
        setTabs((t) => {
          const existing = t.files.find((f) => f.path === res.path);
          return openTab(t, { ...loaded, version: (existing?.version ?? 0) + 1 });
        });
        setError(undefined);
      } catch (err) {
        setError(`Could not open ${path}: ${String(err)}`);
      }
    },
    [fs, agentWrites, restoreWrites, setTabs],
  );

  /** A tree click: switch to an open tab as it is (keeping edits), or load the file. */
  const show = useCallback(
    (path: string) => {
      if (tabs.files.some((f) => f.path === path)) setTabs((t) => ({ ...t, active: path }));
      else void open(path);
    },
    [open, tabs.files],
  );

  const edit = useCallback(
    (path: string, content: string) => {
      drafts.current[path] = content;
      setTabs((t) => updateTab(t, path, (f) => ({ ...f, draft: content })));
    },
    [],
  );

  const dirty = !readOnly && file !== undefined && isDirty(file);
  const agentChanged = file !== undefined && (agentWrites[file.path] ?? 0) > file.agentSeen;
  const restoreChanged = file !== undefined && (restoreWrites[file.path] ?? 0) > file.restoreSeen;

  const save = useCallback(
    async (force = false) => {
      const current = file;
      if (!current || current.binary || saving || readOnly) return;
      setSaving(true);
      const content = drafts.current[current.path] ?? current.draft;
      try {
        const res = await fs.write(current.path, content, force ? undefined : current.sha256);
        setTabs((t) =>
          updateTab(t, current.path, (f) => ({
            ...f,
            saved: content,
            sha256: res.sha256,
            agentSeen: agentWrites[f.path] ?? f.agentSeen,
            restoreSeen: restoreWrites[f.path] ?? f.restoreSeen,
          })),
        );
        setToast({ text: `Saved ${current.path}`, id: Date.now() });
        setError(undefined);
        setDialog(undefined);
      } catch (err) {
        if (err instanceof ApiError && err.status === 409) setDialog({ kind: "conflict", path: current.path });
        else setError(`Saving failed: ${String(err)}`);
      } finally {
        setSaving(false);
      }
    },
    [file, fs, saving, agentWrites, restoreWrites, readOnly],
  );

  /** Save your text next to the file (`App.mine.tsx`), then load theirs. */
  const keepMineAsCopy = async (path: string) => {
    const mine = tabs.files.find((f) => f.path === path);
    if (!mine) return;
    const text = drafts.current[path] ?? mine.draft;
    setDialog(undefined);
    try {
      const siblings = await fs.ls(parentDir(path));
      const copy = mineCopyPath(path, new Set(siblings.entries.map((e) => e.path)));
      await fs.write(copy, text);
      await open(path);
      setTreeToken((t) => t + 1);
      setToast({ text: `Your version is saved as ${baseName(copy)}`, id: Date.now() });
    } catch (err) {
      setError(`Could not save your copy: ${String(err)}`);
    }
  };

  const runDialog = async (value?: string) => {
    const d = dialog;
    setDialog(undefined);
    if (!d) return;
    try {
      if (d.kind === "new" && value) {
        const path = join(d.base, value);
        await fs.create(path, d.dirKind);
        setTreeToken((t) => t + 1);
        if (d.dirKind === "file") await open(path);
      } else if (d.kind === "rename" && value) {
        const to = join(parentDir(d.entry.path), value);
        await fs.rename(d.entry.path, to);
        setTreeToken((t) => t + 1);
        setTabs((t) => renameTabs(t, d.entry.path, to));
      } else if (d.kind === "delete") {
        await fs.rm(d.entry.path, d.entry.is_dir);
        setTreeToken((t) => t + 1);
        setTabs((t) => closeUnder(t, d.entry.path));
      }
    } catch (err) {
      setError(String(err));
    }
  };

  const selectedEntry: FsEntry | undefined = file ? { path: file.path, name: baseName(file.path), is_dir: false } : undefined;
  const baseDir = file ? parentDir(file.path) : "/";
  const paths = tabs.files.map((f) => f.path);
  const select = (path: string) => setTabs((t) => ({ ...t, active: path }));
  const close = (path: string) => setTabs((t) => closeTab(t, path));
  const conflictFile = dialog?.kind === "conflict" ? tabs.files.find((f) => f.path === dialog.path) : undefined;

  return (
    <section className="code-pane" aria-label="Code" hidden={hidden}>
      <div className="code-sidebar">
        <div className="code-sidebar-actions">
          {!readOnly && (
            <>
              <button className="btn ghost small" data-testid="code-new-file" onClick={() => setDialog({ kind: "new", dirKind: "file", base: baseDir })}>
                + File
              </button>
              <button className="btn ghost small" data-testid="code-new-dir" onClick={() => setDialog({ kind: "new", dirKind: "dir", base: baseDir })}>
                + Folder
              </button>
            </>
          )}
          <button className="icon-btn" title="Refresh" aria-label="Refresh files" onClick={() => setTreeToken((t) => t + 1)}>
            <ReloadIcon />
          </button>
        </div>
        <FileTree
          fs={fs}
          selected={file?.path}
          refreshToken={treeToken + agentTotal + restoreTotal}
          onOpen={show}
          onContext={readOnly ? undefined : (entry) => setDialog({ kind: "rename", entry })}
          showHidden={showHidden}
        />
        <label className="code-show-hidden small">
          <input
            type="checkbox"
            checked={showHidden}
            onChange={(e) => setShowHidden(e.target.checked)}
            data-testid="code-show-hidden"
          />
          Show node_modules and build output
        </label>
      </div>
      <div className="code-main">
        {tabs.files.length > 0 && (
          <div className="code-tabs" role="tablist" aria-label="Open files" data-testid="code-tabs">
            {tabs.files.map((f) => {
              const icon = fileIcon(f.path);
              return (
                <button
                  key={f.path}
                  className={`code-tab${f.path === tabs.active ? " active" : ""}`}
                  title={`${f.path} (Delete closes the tab)`}
                  data-testid="code-tab"
                  data-path={f.path}
                  aria-keyshortcuts="Delete"
                  {...tabProps("code-tab", paths, tabs.active, select, f.path, "code-editor-panel")}
                  onKeyDown={(e) => {
                    if (e.key === "Delete") {
                      e.preventDefault();
                      close(f.path);
                    } else tabProps("code-tab", paths, tabs.active, select, f.path).onKeyDown(e);
                  }}
                  onAuxClick={(e) => e.button === 1 && close(f.path)}
                >
                  <span className={`file-icon file-icon-${icon.kind}`} aria-hidden="true">
                    {icon.label}
                  </span>
                  {baseName(f.path)}
                  {!readOnly && isDirty(f) && <span className="dirty-dot" aria-label="unsaved" role="img" />}
                  <span
                    className="code-tab-close"
                    aria-hidden="true"
                    data-testid="code-tab-close"
                    onClick={(e) => {
                      e.stopPropagation();
                      close(f.path);
                    }}
                  >
                    ×
                  </span>
                </button>
              );
            })}
          </div>
        )}
        <div className="code-toolbar">
          <span className="code-path" data-testid="code-path">
            {file ? file.path : "No file open"}
            {dirty && <span className="dirty-dot" title="Unsaved changes" data-testid="code-dirty" />}
          </span>
          {readOnly && (
            <span className="badge" data-testid="code-read-only" title="You can view this project; ask the owner for edit access to change files.">
              Read-only
            </span>
          )}
          {selectedEntry && !readOnly && (
            <>
              <button className="btn ghost small" data-testid="code-rename" onClick={() => setDialog({ kind: "rename", entry: selectedEntry })}>
                Rename
              </button>
              <button className="btn ghost small danger" data-testid="code-delete" onClick={() => setDialog({ kind: "delete", entry: selectedEntry })}>
                Delete
              </button>
            </>
          )}
          {!readOnly && (
            <button
              className="btn primary small"
              data-testid="code-save"
              disabled={!dirty || saving}
              onClick={() => void save()}
              title="Save (Ctrl+S)"
            >
              {saving ? "Saving…" : "Save"}
            </button>
          )}
        </div>
        {(agentChanged || restoreChanged) && file && (
          <div className="banner warn" data-testid="code-agent-changed" data-cause={agentChanged ? "agent" : "restore"} role="status">
            {agentChanged ? "The agent changed this file." : "This file was restored from History."}
            {dirty ? " Your unsaved edits are based on the old version." : ""}
            <button className="link-btn" data-testid="code-reload" onClick={() => void open(file.path)}>
              Reload
            </button>
          </div>
        )}
        {error && (
          <div className="banner error" data-testid="code-error" role="alert">
            {error}
          </div>
        )}
        <div className="code-editor-panel" id="code-editor-panel" role={tabs.files.length > 0 ? "tabpanel" : undefined} aria-labelledby={file ? `code-tab-${file.path}` : undefined}>
          {toast && (
            <div className="code-toast" role="status" data-testid="code-message" key={toast.id}>
              {toast.text}
            </div>
          )}
          {file === undefined ? (
            <div className="pane-placeholder muted">Select a file to view or edit it.</div>
          ) : file.binary ? (
            <div className="pane-placeholder muted">This file is binary or too large to edit here.</div>
          ) : (
            <CodeEditor
              key={file.path}
              path={file.path}
              content={file.draft}
              version={file.version}
              theme={theme}
              onChange={(content) => edit(file.path, content)}
              onSave={() => void save()}
              readOnly={readOnly}
            />
          )}
        </div>
      </div>
      {conflictFile && (
        <ConflictDialog
          fs={fs}
          path={conflictFile.path}
          mine={conflictFile.draft}
          onOverwrite={() => void save(true)}
          onKeepCopy={() => void keepMineAsCopy(conflictFile.path)}
          onReload={() => {
            setDialog(undefined);
            void open(conflictFile.path);
          }}
          onCancel={() => setDialog(undefined)}
        />
      )}
      {dialog?.kind === "new" && (
        <PromptDialog
          title={dialog.dirKind === "file" ? "New file" : "New folder"}
          label={`Name or path (relative to ${dialog.base})`}
          initial=""
          confirmLabel="Create"
          onConfirm={(v) => void runDialog(v)}
          onCancel={() => setDialog(undefined)}
        />
      )}
      {dialog?.kind === "rename" && (
        <PromptDialog
          title={`Rename ${dialog.entry.name}`}
          label="New name"
          initial={dialog.entry.name}
          confirmLabel="Rename"
          onConfirm={(v) => void runDialog(v)}
          onCancel={() => setDialog(undefined)}
        />
      )}
      {dialog?.kind === "delete" && (
        <ConfirmDialog
          title={`Delete ${dialog.entry.path}?`}
          body={dialog.entry.is_dir ? "The folder and everything in it will be deleted." : "The file will be deleted."}
          confirmLabel="Delete"
          danger
          onConfirm={() => void runDialog()}
          onCancel={() => setDialog(undefined)}
        />
      )}
    </section>
  );
}
