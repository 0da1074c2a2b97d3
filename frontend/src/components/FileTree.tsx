/** Lazy file tree of the sandbox workspace (directories load when opened). */
import { useCallback, useEffect, useState } from "react";
import type { FsEntry, SandboxFs } from "../api/http";
import { fileIcon, isHiddenEntry } from "../code/files";

interface Props {
  fs: SandboxFs;
  selected: string | undefined;
  refreshToken: number;
  onOpen: (path: string) => void;
  /** Right click (rename); none in a read-only project. */
  onContext?: (entry: FsEntry) => void;
  /** Show dependencies and build output (node_modules, dist, .next, …), hidden by default. */
  showHidden?: boolean;
}

export function FileTree({ fs, selected, refreshToken, onOpen, onContext, showHidden = false }: Props) {
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

  const render = (dir: string, depth: number): React.ReactNode[] =>
    (children[dir] ?? []).flatMap((entry) => {
      const hiddenKind = isHiddenEntry(entry.name, entry.is_dir);
      if (hiddenKind && !showHidden) return [];
      const isOpen = open.has(entry.path);
      const icon = entry.is_dir ? undefined : fileIcon(entry.path);
      return (
        <li key={entry.path}>
          <button
            className={`tree-row${selected === entry.path ? " selected" : ""}${hiddenKind ? " dim" : ""}`}
            style={{ paddingLeft: `${8 + depth * 14}px` }}
            data-path={entry.path}
            aria-expanded={entry.is_dir ? isOpen : undefined}
            data-testid={entry.is_dir ? "tree-dir" : "tree-file"}
            onClick={() => (entry.is_dir ? toggle(entry.path) : onOpen(entry.path))}
            onContextMenu={(e) => {
              if (!onContext) return;
              e.preventDefault();
              onContext(entry);
            }}
            title={entry.path}
          >
            {icon ? (
              <span className={`file-icon file-icon-${icon.kind}`} aria-hidden="true">
                {icon.label}
              </span>
            ) : (
              <span className="tree-icon" aria-hidden="true">
                {isOpen ? "▾" : "▸"}
              </span>
            )}
            <span className="tree-name">{entry.name}</span>
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
