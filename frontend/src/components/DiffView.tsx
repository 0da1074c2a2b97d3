/**
 * What a checkpoint changed: its files with `+`/`−` counts, each with its unified diff (side by
 * side on wide screens, switchable), binary and too-large files named with a note. `DiffDialog`
 * loads a checkpoint's diff and shows it in a dialog (from History and from a turn's card).
 */
import { useEffect, useState } from "react";
import { ApiError, checkpointsApi } from "../api/http";
import type { CheckpointDiff, FileDiff } from "../protocol/types.gen";
import {
  diffErrorMessage,
  diffSummary,
  fileNote,
  splitRows,
  statusBadge,
  truncatedNote,
  unifiedRows,
  type Cell,
} from "../state/diffs";
import { Modal } from "./Dialog";

/** Wide enough for two columns of code. */
export const WIDE_QUERY = "(min-width: 1100px)";

function useWide(): boolean {
  const supported = typeof window.matchMedia === "function";
  const [wide, setWide] = useState(() => supported && window.matchMedia(WIDE_QUERY).matches);
  useEffect(() => {
    if (!supported) return;
    const query = window.matchMedia(WIDE_QUERY);
    const on = () => setWide(query.matches);
    query.addEventListener("change", on);
    return () => query.removeEventListener("change", on);
  }, [supported]);
  return wide;
}

const SIGN = { context: " ", add: "+", del: "−", note: "" } as const;

function Unified({ file }: { file: FileDiff }) {
  return (
    <table className="diff-table unified" data-testid="diff-unified">
      <tbody>
        {(file.hunks ?? []).map((hunk, h) => [
          <tr key={`h${h}`} className="diff-hunk">
            <td colSpan={3}>
              @@ −{hunk.old_start},{hunk.old_lines} +{hunk.new_start},{hunk.new_lines} @@ {hunk.header}
            </td>
          </tr>,
          ...unifiedRows(hunk).map((row, i) => (
            <tr key={`${h}-${i}`} className={`diff-line ${row.kind}`} data-kind={row.kind}>
              <td className="diff-no">{row.oldNo ?? ""}</td>
              <td className="diff-no">{row.newNo ?? ""}</td>
              <td className="diff-code">
                <span className="diff-sign" aria-hidden="true">
                  {SIGN[row.kind]}
                </span>
                {row.text}
              </td>
            </tr>
          )),
        ])}
      </tbody>
    </table>
  );
}

function SideCell({ cell }: { cell: Cell | undefined }) {
  if (!cell) return <td className="diff-code empty" colSpan={2} />;
  return (
    <>
      <td className={`diff-no ${cell.kind}`}>{cell.no ?? ""}</td>
      <td className={`diff-code ${cell.kind}`} data-kind={cell.kind}>
        {cell.text}
      </td>
    </>
  );
}

function Split({ file }: { file: FileDiff }) {
  return (
    <table className="diff-table split" data-testid="diff-split">
      <tbody>
        {(file.hunks ?? []).map((hunk, h) => [
          <tr key={`h${h}`} className="diff-hunk">
            <td colSpan={4}>
              @@ −{hunk.old_start},{hunk.old_lines} +{hunk.new_start},{hunk.new_lines} @@ {hunk.header}
            </td>
          </tr>,
          ...splitRows(hunk).map((row, i) => (
            <tr key={`${h}-${i}`} className="diff-line">
              <SideCell cell={row.left} />
              <SideCell cell={row.right} />
            </tr>
          )),
        ])}
      </tbody>
    </table>
  );
}

function FileBlock({ file, split }: { file: FileDiff; split: boolean }) {
  const badge = statusBadge(file);
  const note = fileNote(file);
  return (
    <section className="diff-file" data-testid="diff-file" data-path={file.path} data-status={file.status}>
      <header className="diff-file-head">
        <span className={`diff-badge ${file.status}`} title={badge.word} aria-label={badge.word}>
          {badge.letter}
        </span>
        <span className="diff-path">
          {file.old_path ? `${file.old_path} → ` : ""}
          {file.path}
        </span>
        {file.binary ? (
          <span className="muted small">binary</span>
        ) : (
          <span className="diff-stat small" data-testid="diff-file-stat">
            <span className="add">+{file.additions ?? 0}</span> <span className="del">−{file.deletions ?? 0}</span>
          </span>
        )}
      </header>
      {note ? (
        <p className="diff-note muted small" data-testid="diff-note">
          {note}
        </p>
      ) : split ? (
        <Split file={file} />
      ) : (
        <Unified file={file} />
      )}
    </section>
  );
}

/** The files of one checkpoint's diff. */
export function DiffView({ diff }: { diff: CheckpointDiff }) {
  const wide = useWide();
  const [choice, setChoice] = useState<"split" | "unified" | undefined>();
  const split = (choice ?? (wide ? "split" : "unified")) === "split";
  const cut = truncatedNote(diff);
  return (
    <div className="diff-view" data-testid="diff-view" data-layout={split ? "split" : "unified"}>
      <div className="diff-toolbar">
        <span className="muted small" data-testid="diff-summary">
          {diffSummary(diff)}
        </span>
        <div className="seg" role="group" aria-label="Diff layout">
          <button
            className={split ? "btn small" : "btn small active"}
            aria-pressed={!split}
            onClick={() => setChoice("unified")}
            data-testid="diff-layout-unified"
          >
            Unified
          </button>
          <button
            className={split ? "btn small active" : "btn small"}
            aria-pressed={split}
            onClick={() => setChoice("split")}
            data-testid="diff-layout-split"
          >
            Side by side
          </button>
        </div>
      </div>
      {cut && (
        <p className="diff-note warn small" role="note" data-testid="diff-truncated">
          {cut}
        </p>
      )}
      {diff.files.length === 0 && <p className="muted">No file changes in this checkpoint.</p>}
      {diff.files.map((file) => (
        <FileBlock key={`${file.old_path ?? ""}>${file.path}`} file={file} split={split} />
      ))}
    </div>
  );
}

type Load = { kind: "loading" } | { kind: "ready"; diff: CheckpointDiff } | { kind: "failed"; message: string };

interface DialogProps {
  projectId: string;
  sha: string;
  /** Shown while loading (the checkpoint's title when the caller knows it). */
  title?: string;
  onClose: () => void;
}

/** A dialog loading and showing checkpoint `sha`'s changes. */
export function DiffDialog({ projectId, sha, title, onClose }: DialogProps) {
  const [load, setLoad] = useState<Load>({ kind: "loading" });
  useEffect(() => {
    let live = true; // a new sha remounts the dialog (callers key it by sha)
    checkpointsApi(projectId)
      .diff(sha)
      .then((diff) => live && setLoad({ kind: "ready", diff }))
      .catch(
        (err: unknown) =>
          live &&
          setLoad({
            kind: "failed",
            message: err instanceof ApiError ? diffErrorMessage(err.code, err.detail) : diffErrorMessage(String(err)),
          }),
      );
    return () => {
      live = false;
    };
  }, [projectId, sha]);
  const heading = load.kind === "ready" ? load.diff.title : title;
  return (
    <Modal label="Changes" testId="diff-dialog" className="diff-dialog" onClose={onClose}>
      <div className="history-head">
        <h3>
          Changes{heading ? `: ${heading}` : ""} <code className="muted small">{sha.slice(0, 7)}</code>
        </h3>
        <button className="btn small ghost" onClick={onClose} data-testid="diff-close">
          Close
        </button>
      </div>
      <div className="diff-scroll">
        {load.kind === "loading" && <p className="muted">Loading the changes…</p>}
        {load.kind === "failed" && (
          <p className="history-message bad" data-testid="diff-error">
            {load.message}
          </p>
        )}
        {load.kind === "ready" && <DiffView diff={load.diff} />}
      </div>
    </Modal>
  );
}
