/** The row editor's controls in the database pane (editors only): a cell edited in place, the
 * form of a new row, and a row's Delete button behind a confirmation. Each reports a change
 * with `onChanged` (reload the page) and a failure as a readable sentence with `onError`. */
import { useState } from "react";
import { ApiError } from "../api/http";
import { dbApi, type RowColumn, type RowValues } from "../api/db";
import { cellText, newRowValues, parseCellInput, rowErrorMessage } from "../state/dbRows";
import { ConfirmDialog } from "./Dialog";

interface Target {
  projectId: string;
  table: string;
  onChanged: () => void;
  onError: (message: string) => void;
}

function describe(err: unknown): string {
  return err instanceof ApiError ? rowErrorMessage(err.code, err.detail) : String(err);
}

export function EditableCell({
  target,
  column,
  rowKey,
  value,
}: {
  target: Target;
  column: RowColumn;
  rowKey: RowValues;
  value: unknown;
}) {
  const [text, setText] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);
  const save = (asNull: boolean) => {
    const parsed = parseCellInput(column, text ?? "", asNull);
    if (!parsed.ok) return target.onError(parsed.error);
    setBusy(true);
    dbApi
      .updateRow(target.projectId, target.table, rowKey, { [column.name]: parsed.value })
      .then(() => {
        setText(undefined);
        target.onChanged();
      }, (err: unknown) => target.onError(describe(err)))
      .finally(() => setBusy(false));
  };
  if (text === undefined) {
    return (
      <button
        className="db-cell-edit"
        title={`Edit ${column.name}`}
        onClick={() => setText(cellText(value))}
        data-testid="db-cell-edit"
        data-column={column.name}
      >
        {value === null || value === undefined ? "NULL" : cellText(value)}
      </button>
    );
  }
  return (
    <span className="db-cell-editing">
      <input
        className="mono"
        autoFocus
        value={text}
        disabled={busy}
        aria-label={`New value of ${column.name}`}
        onChange={(e) => setText(e.target.value)}
        onKeyDown={(e) => {
          if (e.key === "Enter") save(false);
          if (e.key === "Escape") setText(undefined);
        }}
        data-testid="db-cell-input"
      />
      <button className="btn small" disabled={busy} onClick={() => save(false)} data-testid="db-cell-save">
        Save
      </button>
      {column.nullable && (
        <button className="btn small ghost" disabled={busy} onClick={() => save(true)} title="Set to NULL">
          NULL
        </button>
      )}
      <button className="btn small ghost" disabled={busy} onClick={() => setText(undefined)}>
        Cancel
      </button>
    </span>
  );
}

export function NewRowForm({ target, columns }: { target: Target; columns: RowColumn[] }) {
  const [inputs, setInputs] = useState<Record<string, string>>({});
  const [busy, setBusy] = useState(false);
  const add = () => {
    const built = newRowValues(columns, inputs);
    if (!built.ok) return target.onError(built.error);
    setBusy(true);
    dbApi
      .insertRow(target.projectId, target.table, built.values)
      .then(() => {
        setInputs({});
        target.onChanged();
      }, (err: unknown) => target.onError(describe(err)))
      .finally(() => setBusy(false));
  };
  return (
    <form
      className="db-new-row"
      data-testid="db-new-row"
      onSubmit={(e) => {
        e.preventDefault();
        add();
      }}
    >
      <span className="small muted">New row (empty fields get their default):</span>
      {columns.map((c) => (
        <label key={c.name} className="small">
          {c.name}
          <input
            className="mono"
            value={inputs[c.name] ?? ""}
            placeholder={c.has_default ? "default" : c.nullable ? "NULL" : c.type}
            onChange={(e) => setInputs({ ...inputs, [c.name]: e.target.value })}
            data-testid="db-new-row-input"
            data-column={c.name}
          />
        </label>
      ))}
      <button className="btn small primary" type="submit" disabled={busy} data-testid="db-row-add">
        Add row
      </button>
    </form>
  );
}

export function DeleteRowButton({ target, rowKey }: { target: Target; rowKey: RowValues }) {
  const [confirming, setConfirming] = useState(false);
  const named = Object.entries(rowKey)
    .map(([k, v]) => `${k} = ${cellText(v)}`)
    .join(", ");
  const remove = () => {
    setConfirming(false);
    dbApi
      .deleteRow(target.projectId, target.table, rowKey)
      .then(() => target.onChanged(), (err: unknown) => target.onError(describe(err)));
  };
  return (
    <>
      <button className="btn small ghost" title="Delete this row" onClick={() => setConfirming(true)} data-testid="db-row-delete">
        Delete
      </button>
      {confirming && (
        <ConfirmDialog
          title="Delete this row?"
          body={<span>The row of {target.table} with {named} is deleted from the database. This cannot be undone.</span>}
          confirmLabel="Delete row"
          danger
          onConfirm={remove}
          onCancel={() => setConfirming(false)}
          testId="db-row-delete-confirm"
        />
      )}
    </>
  );
}
