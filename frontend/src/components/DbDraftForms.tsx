/** The draft editor's small forms: add a table, add a column / change a type / link, and
 * "describe a change" (sent to the model, which returns a draft to review). */
import { useState, type FormEvent } from "react";
import {
  COLUMN_TYPES,
  type DbAction,
  type DbPaneState,
} from "../state/dbSchema";
import type { DbDefault } from "../api/db";
import { SelectField, TextField } from "./DbField";

type Dispatch = (a: DbAction) => void;

function AddTable({ dispatch }: { dispatch: Dispatch }) {
  const [name, setName] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    dispatch({ type: "add_table", name: name.trim() });
    setName("");
  };
  return (
    <form className="db-form" onSubmit={submit} aria-label="Add table">
      <TextField
        label="New table name"
        placeholder="new_table"
        value={name}
        onChange={setName}
        testId="db-new-table"
      />
      <button
        className="btn small"
        type="submit"
        disabled={!name.trim()}
        data-testid="db-add-table"
      >
        Add table
      </button>
    </form>
  );
}

/** The default typed in the form, as the API wants it for `type`. */
export function parseDefault(
  text: string,
  type: string,
): DbDefault | undefined {
  const raw = text.trim();
  if (raw === "") return undefined;
  if (raw.toLowerCase() === "now()") return { raw: "now()" };
  if (type === "boolean" && (raw === "true" || raw === "false"))
    return raw === "true";
  if (
    ["integer", "bigint", "numeric", "real", "double precision"].includes(
      type,
    ) &&
    /^-?\d+(\.\d+)?$/.test(raw)
  )
    return Number(raw);
  return text;
}

function AddColumn({ table, dispatch }: { table: string; dispatch: Dispatch }) {
  const [name, setName] = useState("");
  const [type, setType] = useState<string>("text");
  const [nullable, setNullable] = useState(true);
  const [def, setDef] = useState("");
  const submit = (e: FormEvent) => {
    e.preventDefault();
    dispatch({
      type: "add_column",
      table,
      column: {
        name: name.trim(),
        type,
        nullable,
        default: parseDefault(def, type),
      },
    });
    setName("");
    setDef("");
  };
  return (
    <form className="db-form" onSubmit={submit} aria-label="Add column">
      <TextField
        label="New column name"
        placeholder="column_name"
        value={name}
        onChange={setName}
        testId="db-new-column"
      />
      <SelectField
        label="New column type"
        options={COLUMN_TYPES}
        value={type}
        onChange={setType}
        testId="db-new-column-type"
      />
      <label className="small">
        <input
          type="checkbox"
          checked={nullable}
          onChange={(e) => setNullable(e.target.checked)}
        />{" "}
        nullable
      </label>
      <TextField
        label="New column default"
        placeholder="default (optional)"
        value={def}
        onChange={setDef}
      />
      <button
        className="btn small"
        type="submit"
        disabled={!name.trim()}
        data-testid="db-add-column"
      >
        Add column
      </button>
    </form>
  );
}

function ChangeType({
  state,
  table,
  dispatch,
}: {
  state: DbPaneState;
  table: string;
  dispatch: Dispatch;
}) {
  const columns =
    state.draft?.tables
      .find((t) => t.name === table)
      ?.columns.filter((c) => !c.is_primary) ?? [];
  const [column, setColumn] = useState("");
  const [type, setType] = useState<string>("text");
  if (columns.length === 0) return null;
  const chosen = columns.some((c) => c.name === column)
    ? column
    : (columns[0]?.name ?? "");
  return (
    <form
      className="db-form"
      aria-label="Change column type"
      onSubmit={(e) => {
        e.preventDefault();
        dispatch({ type: "set_type", table, column: chosen, columnType: type });
      }}
    >
      <SelectField
        label="Column"
        options={columns.map((c) => c.name)}
        value={chosen}
        onChange={setColumn}
      />
      <SelectField
        label="New type"
        options={COLUMN_TYPES}
        value={type}
        onChange={setType}
      />
      <button className="btn small" type="submit">
        Change type
      </button>
    </form>
  );
}

function Link({
  state,
  table,
  dispatch,
}: {
  state: DbPaneState;
  table: string;
  dispatch: Dispatch;
}) {
  const tables = state.draft?.tables ?? [];
  const columns = tables.find((t) => t.name === table)?.columns ?? [];
  const [column, setColumn] = useState("");
  const [target, setTarget] = useState("");
  if (columns.length === 0 || tables.length === 0) return null;
  const from = columns.some((c) => c.name === column)
    ? column
    : (columns[0]?.name ?? "");
  const to = tables.some((t) => t.name === target)
    ? target
    : (tables[0]?.name ?? "");
  const toColumn =
    tables.find((t) => t.name === to)?.columns.find((c) => c.is_primary)
      ?.name ?? "id";
  return (
    <form
      className="db-form"
      aria-label="Link to another table"
      onSubmit={(e) => {
        e.preventDefault();
        dispatch({
          type: "add_relationship",
          fromTable: table,
          fromColumn: from,
          toTable: to,
          toColumn,
        });
      }}
    >
      <SelectField
        label="Linking column"
        options={columns.map((c) => c.name)}
        value={from}
        onChange={setColumn}
      />
      <span className="muted small">→</span>
      <SelectField
        label="Linked table"
        options={tables.map((t) => t.name)}
        value={to}
        onChange={setTarget}
      />
      <span className="muted small">.{toColumn}</span>
      <button className="btn small" type="submit">
        Link
      </button>
    </form>
  );
}

function Edit({ state, dispatch }: { state: DbPaneState; dispatch: Dispatch }) {
  const table = state.selected;
  if (!table) return null;
  return (
    <div className="db-forms" key={table}>
      <AddColumn table={table} dispatch={dispatch} />
      <ChangeType state={state} table={table} dispatch={dispatch} />
      <Link state={state} table={table} dispatch={dispatch} />
    </div>
  );
}

function Intent({
  busy,
  onSubmit,
}: {
  busy: boolean;
  onSubmit: (text: string) => void;
}) {
  const [text, setText] = useState("");
  return (
    <form
      className="db-form db-intent"
      aria-label="Describe a change"
      onSubmit={(e) => {
        e.preventDefault();
        if (text.trim()) onSubmit(text.trim());
      }}
    >
      <TextField
        label="Describe a schema change"
        placeholder="Describe a change, e.g. “customers need a phone number”"
        value={text}
        onChange={setText}
      />
      <button
        className="btn small"
        type="submit"
        disabled={busy || !text.trim()}
      >
        {busy ? "Drafting…" : "Draft with AI"}
      </button>
    </form>
  );
}

export const DbDraftForms = { AddTable, Edit, Intent };
