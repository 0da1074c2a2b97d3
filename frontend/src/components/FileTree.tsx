/** Lazy file tree of the sandbox workspace (directories load when opened). */
import { useCallback, useEffect, useState } from "react";
import type { FsEntry, SandboxFs } from "../api/http";

interface Props {
  fs: SandboxFs;
  selected: string | undefined;
  refreshToken: number;
  onOpen: (path: string) => void;
  /** Right click (rename); none in a read-only project. */
  onContext?: (entry: FsEntry) => void;
}

const HIDDEN = new Set(["node_modules", ".git"]);

export function FileTree({ fs, selected, refreshToken, onOpen, onContext }: Props) {
  const [children, setChildren] = useState<Record<string, FsEntry[]>>({});
  const [open, setOpen] = useState<Set<string>>(() => new Set(["/"]));
  const [error, setError] = useState<string | undefined>();

  const load = useCallback(
    (dir: string) =>
      fs
        .ls(dir)
        .then((res) => {
          const sorted = [...res.entries]
            .filter((e) => e.name !== "." && e.name !== "..")
            .sort((a, b) => (a.is_dir === b.is_dir ? a.name.localeCompare(b.name) : a.is_dir ? -1 : 1));
          setChildren((prev) => ({ ...prev, [dir]: sorted }));
          setError(undefined);
        })
        .catch((err: unknown) => setError(String(err))),
    [fs],
  );

  // Reload every open directory when the workspace may have changed.
  useEffect(() => {
    open.forEach((dir) => void load(dir));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [load, refreshToken]);

  const toggle = (dir: string) => {
    setOpen((prev) => {
      const next = new Set(prev);
      if (next.has(dir)) next.delete(dir);
      else {
        next.add(dir);
        if (!children[dir]) void load(dir);
      }
      return next;
    });
  };

  const render = (dir: string, depth: number): React.ReactNode =>
    (children[dir] ?? []).map((entry) => {
      const isOpen = open.has(entry.path);
      return (
        <li key={entry.path}>
          <button
            className={`tree-row${selected === entry.path ? " selected" : ""}${HIDDEN.has(entry.name) ? " dim" : ""}`}
            style={{ paddingLeft: `${8 + depth * 14}px` }}
            data-path={entry.path}
            data-testid={entry.is_dir ? "tree-dir" : "tree-file"}
            onClick={() => (entry.is_dir ? toggle(entry.path) : onOpen(entry.path))}
            onContextMenu={(e) => {
              if (!onContext) return;
              e.preventDefault();
              onContext(entry);
            }}
            title={entry.path}
          >
            <span className="tree-icon">{entry.is_dir ? (isOpen ? "▾" : "▸") : "·"}</span>
            {entry.name}
          </button>
          {entry.is_dir && isOpen && <ul>{render(entry.path, depth + 1)}</ul>}
        </li>
      );
    });

  return (
    <nav className="file-tree" data-testid="file-tree" aria-label="Files">
      {error && <p className="form-error small">{error}</p>}
      <ul>{render("/", 0)}</ul>
    </nav>
  );
}
