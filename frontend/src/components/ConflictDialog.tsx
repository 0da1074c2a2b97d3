/**
 * The file changed on disk while you edited it: a diff of their version against yours, and
 * four ways out — cancel (the safe default), overwrite theirs, keep yours as a copy next to the
 * file and load theirs, or drop yours and load theirs.
 */
import { useEffect, useMemo, useRef, useState } from "react";
import type { SandboxFs } from "../api/http";
import { baseName, compactDiff, lineDiff, mineCopyPath } from "../code/files";
import { Modal } from "./Dialog";

interface Props {
  fs: SandboxFs;
  path: string;
  mine: string;
  onOverwrite: () => void;
  onKeepCopy: () => void;
  onReload: () => void;
  onCancel: () => void;
}

type Theirs = { kind: "loading" } | { kind: "ready"; text: string } | { kind: "failed"; message: string };

export function ConflictDialog({ fs, path, mine, onOverwrite, onKeepCopy, onReload, onCancel }: Props) {
  const [theirs, setTheirs] = useState<Theirs>({ kind: "loading" });
  const cancelRef = useRef<HTMLButtonElement>(null);
  useEffect(() => cancelRef.current?.focus(), []);
  useEffect(() => {
    let live = true;
    fs.read(path)
      .then((res) => live && setTheirs({ kind: "ready", text: res.content ?? "" }))
      .catch((err: unknown) => live && setTheirs({ kind: "failed", message: String(err) }));
    return () => {
      live = false;
    };
  }, [fs, path]);
  const diff = useMemo(() => (theirs.kind === "ready" ? compactDiff(lineDiff(theirs.text, mine)) : []), [theirs, mine]);

  return (
    <Modal label="This file changed on disk" testId="conflict-dialog" className="conflict-dialog" onClose={onCancel}>
      <h3>This file changed on disk</h3>
      <div className="dialog-body">
        <span>
          Someone (probably the agent) saved {path} after you opened it. Lines marked − are only in their version, + only
          in yours.
        </span>
        {theirs.kind === "loading" && <span className="muted">Loading their version…</span>}
        {theirs.kind === "failed" && <span className="form-error">Could not load their version: {theirs.message}</span>}
        {theirs.kind === "ready" && (
          <pre className="conflict-diff" data-testid="conflict-diff" tabIndex={0} aria-label="Differences: theirs (−) and yours (+)">
            {diff.length === 0
              ? "Both versions are the same."
              : diff.map((line, idx) =>
                  line === "gap" ? (
                    <span key={idx} className="diff-gap">
                      {"⋯\n"}
                    </span>
                  ) : (
                    <span key={idx} className={`diff-${line.kind}`}>
                      {line.kind === "add" ? "+ " : line.kind === "del" ? "− " : "  "}
                      {line.text}
                      {"\n"}
                    </span>
                  ),
                )}
          </pre>
        )}
      </div>
      <div className="dialog-actions conflict-actions">
        <button ref={cancelRef} className="btn" onClick={onCancel} data-testid="dialog-cancel">
          Cancel
        </button>
        <button className="btn" onClick={onReload} data-testid="conflict-reload" title="Load their version; your edits are dropped">
          Discard mine
        </button>
        <button
          className="btn"
          onClick={onKeepCopy}
          data-testid="conflict-copy"
          title={`Save your text as ${baseName(mineCopyPath(path))}, then load their version`}
        >
          Keep mine as a copy
        </button>
        <button className="btn danger-solid" onClick={onOverwrite} data-testid="dialog-confirm">
          Overwrite theirs
        </button>
      </div>
    </Modal>
  );
}
