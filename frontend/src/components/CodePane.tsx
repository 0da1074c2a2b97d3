/** The Code tab: file tree, CodeMirror editor, save with conflict detection, file operations. */
import { useCallback, useMemo, useRef, useState } from "react";
import { ApiError, sandboxFs, type FsEntry } from "../api/http";
import type { Theme } from "../theme";
import { CodeEditor } from "./CodeEditor";
import { ConfirmDialog, PromptDialog } from "./Dialog";
import { FileTree } from "./FileTree";
import { ReloadIcon } from "./Icons";

interface Props {
  hidden: boolean;
  projectId: string;
  agentWrites: Record<string, number>;
  theme: Theme;
  /** A viewer's project: browse and read files, change nothing. */
  readOnly?: boolean;
}

interface OpenFile {
  path: string;
  /** Content as loaded / last saved. */
  saved: string;
  sha256: string;
  binary: boolean;
  /** Bumped when the editor document must be replaced (reload). */
  version: number;
  /** agentWrites[path] when the file was loaded. */
  agentSeen: number;
}

type Dialog =
  | { kind: "new"; dirKind: "file" | "dir"; base: string }
  | { kind: "rename"; entry: FsEntry }
  | { kind: "delete"; entry: FsEntry }
  | { kind: "conflict" };

function parentDir(path: string): string {
  const idx = path.lastIndexOf("/");
  return idx <= 0 ? "/" : path.slice(0, idx);
}

function join(dir: string, name: string): string {
  if (name.startsWith("/")) return name;
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

export function CodePane({ hidden, projectId, agentWrites, theme, readOnly = false }: Props) {
  const fs = useMemo(() => sandboxFs(projectId), [projectId]);
  const [file, setFile] = useState<OpenFile | undefined>();
  const [draft, setDraft] = useState("");
  const [saving, setSaving] = useState(false);
  const [message, setMessage] = useState<{ kind: "ok" | "error"; text: string } | undefined>();
  const [dialog, setDialog] = useState<Dialog | undefined>();
  const [treeToken, setTreeToken] = useState(0);
  const agentTotal = Object.values(agentWrites).reduce((a, b) => a + b, 0);
  const draftRef = useRef("");
  const edit = useCallback((content: string) => {
    draftRef.current = content;
    setDraft(content);
  }, []);

  const open = useCallback(
    async (path: string, keepVersion?: number) => {
      try {
        const res = await fs.read(path);
        setFile({
          path: res.path,
          saved: res.content ?? "",
          sha256: res.sha256,
          binary: res.is_binary,
          version: (keepVersion ?? 0) + 1,
          agentSeen: agentWrites[res.path] ?? 0,
        });
        edit(res.content ?? "");
        setMessage(undefined);
      } catch (err) {
        setMessage({ kind: "error", text: `Could not open ${path}: ${String(err)}` });
      }
    },
    [fs, agentWrites, edit],
  );

  const dirty = !readOnly && file !== undefined && !file.binary && draft !== file.saved;
  const agentChanged = file !== undefined && (agentWrites[file.path] ?? 0) > file.agentSeen;

  const save = useCallback(
    async (force = false) => {
      if (!file || file.binary || saving || readOnly) return;
      setSaving(true);
      const content = draftRef.current;
      try {
        const res = await fs.write(file.path, content, force ? undefined : file.sha256);
        setFile({ ...file, saved: content, sha256: res.sha256, agentSeen: agentWrites[file.path] ?? file.agentSeen });
        setMessage({ kind: "ok", text: `Saved ${file.path}` });
        setDialog(undefined);
      } catch (err) {
        if (err instanceof ApiError && err.status === 409) setDialog({ kind: "conflict" });
        else setMessage({ kind: "error", text: `Saving failed: ${String(err)}` });
      } finally {
        setSaving(false);
      }
    },
    [file, fs, saving, agentWrites, readOnly],
  );

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
        if (file?.path === d.entry.path) await open(to);
      } else if (d.kind === "delete") {
        await fs.rm(d.entry.path, d.entry.is_dir);
        setTreeToken((t) => t + 1);
        if (file && (file.path === d.entry.path || file.path.startsWith(`${d.entry.path}/`))) setFile(undefined);
      }
    } catch (err) {
      setMessage({ kind: "error", text: String(err) });
    }
  };

  const selectedEntry: FsEntry | undefined = file
    ? { path: file.path, name: file.path.slice(file.path.lastIndexOf("/") + 1), is_dir: false }
    : undefined;
  const baseDir = file ? parentDir(file.path) : "/";

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
          refreshToken={treeToken + agentTotal}
          onOpen={(path) => void open(path)}
          onContext={readOnly ? undefined : (entry) => setDialog({ kind: "rename", entry })}
        />
      </div>
      <div className="code-main">
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
        {agentChanged && (
          <div className="banner warn" data-testid="code-agent-changed" role="status">
            The agent changed this file.{dirty ? " Your unsaved edits are based on the old version." : ""}
            <button className="link-btn" data-testid="code-reload" onClick={() => file && void open(file.path, file.version)}>
              Reload
            </button>
          </div>
        )}
        {message && (
          <div className={`banner ${message.kind}`} data-testid="code-message" role="status">
            {message.text}
          </div>
        )}
        {file === undefined ? (
          <div className="pane-placeholder muted">Select a file to view or edit it.</div>
        ) : file.binary ? (
          <div className="pane-placeholder muted">This file is binary or too large to edit here.</div>
        ) : (
          <CodeEditor
            path={file.path}
            content={file.saved}
            version={file.version}
            theme={theme}
            onChange={edit}
            onSave={() => void save()}
            readOnly={readOnly}
          />
        )}
      </div>
      {dialog?.kind === "conflict" && file && (
        <ConfirmDialog
          testId="conflict-dialog"
          title="This file changed on disk"
          body={`Someone (probably the agent) saved ${file.path} after you opened it. Overwrite their version with yours, or reload and lose your edits?`}
          confirmLabel="Overwrite"
          danger
          onConfirm={() => void save(true)}
          onCancel={() => setDialog(undefined)}
          extra={{ label: "Reload theirs", testId: "conflict-reload", onClick: () => { setDialog(undefined); void open(file.path, file.version); } }}
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
