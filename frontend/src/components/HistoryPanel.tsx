/**
 * The project's history: its checkpoints (one per turn that changed files, newest first),
 * each with its changes (a diff) and a Restore button. Restoring asks for confirmation; it is disabled while a turn
 * runs or an approval is pending. The list reloads when `version` changes.
 */
import { useCallback, useEffect, useState } from "react";
import { ApiError, checkpointsApi, type Checkpoint } from "../api/http";
import {
  filesChanged,
  historyErrorMessage,
  relativeTime,
  schemaChangesAfter,
  schemaRollbackText,
  skippedNote,
} from "../state/checkpoints";
import { ConfirmDialog, Modal } from "./Dialog";
import { DiffDialog } from "./DiffView";

interface Props {
  projectId: string;
  /** Why restoring is not possible right now (a turn runs, an approval is pending). */
  blockedReason?: string;
  /** Changes when the list may have changed (a turn ended, a restore happened). */
  version: number;
  onClose: () => void;
}

type Load = { kind: "loading" } | { kind: "ready"; items: Checkpoint[] } | { kind: "failed"; message: string };

function describe(err: unknown): string {
  return err instanceof ApiError ? historyErrorMessage(err.code, err.detail) : `Something went wrong: ${String(err)}`;
}

export function HistoryPanel({ projectId, blockedReason, version, onClose }: Props) {
  const [load, setLoad] = useState<Load>({ kind: "loading" });
  const [confirming, setConfirming] = useState<Checkpoint | undefined>();
  const [viewing, setViewing] = useState<Checkpoint | undefined>();
  const [restoring, setRestoring] = useState(false);
  const [message, setMessage] = useState<{ text: string; bad: boolean } | undefined>();
  const api = checkpointsApi(projectId);

  const refresh = useCallback(() => {
    checkpointsApi(projectId)
      .list()
      .then((items) => setLoad({ kind: "ready", items }))
      .catch((err: unknown) => setLoad({ kind: "failed", message: describe(err) }));
  }, [projectId]);

  useEffect(() => {
    refresh();
  }, [refresh, version]);

  const [keepSchemaOf, setKeepSchemaOf] = useState<Checkpoint | undefined>();
  const restore = (target: Checkpoint, keepSchema = false) => {
    setConfirming(undefined);
    setKeepSchemaOf(undefined);
    setRestoring(true);
    setMessage(undefined);
    api
      .restore(target.sha, keepSchema)
      .then((res) => {
        const deps =
          res.dependencies === "installed"
            ? " Dependencies were reinstalled."
            : res.dependencies === "failed"
              ? " Reinstalling the dependencies failed; ask the agent to run npm install."
              : "";
        const schema = schemaRollbackText(res.schema_rollback);
        setMessage({
          text: `Restored to “${res.restored_to.title}”.${deps}${schema ? ` ${schema}` : ""}`,
          bad: res.dependencies === "failed",
        });
        refresh();
      })
      .catch((err: unknown) => {
        setMessage({ text: describe(err), bad: true });
        if (err instanceof ApiError && err.code.startsWith("schema_rollback_")) setKeepSchemaOf(target);
      })
      .finally(() => setRestoring(false));
  };

  const disabled = restoring || blockedReason !== undefined;
  return (
    <>
      <Modal label="History" testId="history-panel" className="history-dialog" onClose={onClose} escape={!confirming && !viewing}>
        <div className="history-head">
          <h3>History</h3>
          <button className="btn small ghost" onClick={onClose} data-testid="history-close">
            Close
          </button>
        </div>
        <p className="muted small history-message">
          A checkpoint is saved after every change the agent makes. Restoring one brings back its files; your current
          files are kept as a checkpoint, so a restore can be undone.
        </p>
        {blockedReason && (
          <p className="history-message muted" data-testid="history-blocked">
            {blockedReason}
          </p>
        )}
        {message && (
          <p className={`history-message${message.bad ? " bad" : ""}`} role="status" data-testid="history-message">
            {message.text}
          </p>
        )}
        {keepSchemaOf && (
          <button
            className="btn small"
            disabled={disabled}
            onClick={() => restore(keepSchemaOf, true)}
            data-testid="restore-keep-schema"
          >
            Restore the files only (keep the database schema as it is)
          </button>
        )}
        {load.kind === "loading" && <p className="muted">Loading the history…</p>}
        {load.kind === "failed" && (
          <p className="history-message bad" data-testid="history-error">
            {load.message}
          </p>
        )}
        {load.kind === "ready" && load.items.length === 0 && (
          <p className="muted" data-testid="history-empty">
            No checkpoints yet. One is saved after the agent's first change.
          </p>
        )}
        {load.kind === "ready" && load.items.length > 0 && (
          <ul className="history-list">
            {load.items.map((cp) => (
              <li key={cp.sha} className="history-item" data-testid="checkpoint" data-sha={cp.sha}>
                <div className="history-text">
                  <span className="history-title" title={cp.title} data-testid="checkpoint-title">
                    {cp.title}
                  </span>
                  <span className="muted small">
                    <time dateTime={new Date(cp.created_at * 1000).toISOString()}>{relativeTime(cp.created_at)}</time>
                    {" · "}
                    {filesChanged(cp.files_changed)}
                    {" · "}
                    <code>{cp.sha.slice(0, 7)}</code>
                  </span>
                  {skippedNote(cp.skipped) && (
                    <span className="muted small" data-testid="checkpoint-skipped">
                      {skippedNote(cp.skipped)}
                    </span>
                  )}
                </div>
                <button
                  className="btn small ghost"
                  title="See what this checkpoint changed"
                  onClick={() => setViewing(cp)}
                  data-testid="checkpoint-changes"
                >
                  Changes
                </button>
                <button
                  className="btn small"
                  disabled={disabled}
                  title={blockedReason ?? "Bring back the files of this checkpoint"}
                  onClick={() => setConfirming(cp)}
                  data-testid="checkpoint-restore"
                >
                  {restoring ? "Restoring…" : "Restore"}
                </button>
              </li>
            ))}
          </ul>
        )}
      </Modal>
      {viewing && (
        <DiffDialog
          key={viewing.sha}
          projectId={projectId} sha={viewing.sha} title={viewing.title} onClose={() => setViewing(undefined)} />
      )}
      {confirming && (
        <ConfirmDialog
          title="Restore this checkpoint?"
          body={
            <>
              <span>
                The project's files go back to “{confirming.title}” ({relativeTime(confirming.created_at)}).
              </span>
              <span>Your current files are saved as a checkpoint first, so you can undo this.</span>
              {schemaNote(load.kind === "ready" ? schemaChangesAfter(load.items, confirming) : [])}
            </>
          }
          confirmLabel="Restore"
          onConfirm={() => restore(confirming)}
          onCancel={() => setConfirming(undefined)}
          testId="restore-confirm"
        />
      )}
    </>
  );
}

function schemaNote(changes: Checkpoint[]) {
  if (changes.length === 0) return null;
  return (
    <span data-testid="restore-schema-note">
      The database schema is rolled back too: {changes.length} schema change{changes.length === 1 ? "" : "s"} made
      since then {changes.length === 1 ? "is" : "are"} undone (tables and columns they added are dropped with their
      data; what they dropped comes back empty).
    </span>
  );
}
