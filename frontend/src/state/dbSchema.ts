/**
 * The database pane's state: the loaded schema, the person's draft, its review, and what
 * is in flight. A pure reducer (tested without a browser); the pane performs the requests
 * and dispatches their answers. Names are checked here as the agent checks them, so most
 * mistakes are explained before a request; the agent remains the authority.
 */
import type {
  ApplyAnswer,
  DbColumn,
  DbDefault,
  DbSchema,
  IntentAnswer,
  ReviewAnswer,
  SchemaAnswer,
} from "../api/db";

/** The column types the agent accepts (its aliases work too). */
export const COLUMN_TYPES = [
  "text",
  "integer",
  "bigint",
  "boolean",
  "numeric",
  "real",
  "double precision",
  "jsonb",
  "date",
  "uuid",
  "timestamp with time zone",
] as const;

const NAME = /^[a-z][a-z0-9_]{0,62}$/;

/** Why `name` is not a usable table/column name (undefined when it is). */
export function nameProblem(
  name: string,
  taken: string[] = [],
): string | undefined {
  if (!NAME.test(name))
    return "Use 1-63 lower case letters, digits and _, starting with a letter.";
  if (taken.includes(name)) return `${name} already exists.`;
  return undefined;
}

export type Busy = "review" | "apply" | "intent" | undefined;

export interface DbPaneState {
  phase: "loading" | "ready" | "error" | "disabled";
  loaded?: SchemaAnswer;
  draft?: DbSchema;
  selected?: string;
  review?: ReviewAnswer;
  /** The review showed destructive changes and the person must confirm them. */
  confirming: boolean;
  busy: Busy;
  error?: string;
  notice?: string;
}

export const initialDbPaneState: DbPaneState = {
  phase: "loading",
  confirming: false,
  busy: undefined,
};

export interface NewColumn {
  name: string;
  type: string;
  nullable: boolean;
  default?: DbDefault;
}

export type DbAction =
  | { type: "loading" }
  | { type: "loaded"; answer: SchemaAnswer }
  | { type: "failed"; code: string; detail?: string }
  | { type: "select"; table: string }
  | { type: "add_table"; name: string }
  | { type: "drop_table"; name: string }
  | { type: "add_column"; table: string; column: NewColumn }
  | { type: "drop_column"; table: string; column: string }
  | { type: "set_type"; table: string; column: string; columnType: string }
  | {
      type: "add_relationship";
      fromTable: string;
      fromColumn: string;
      toTable: string;
      toColumn: string;
    }
  | { type: "drop_relationship"; name: string }
  | { type: "reset" }
  | { type: "busy"; busy: Busy }
  | { type: "reviewed"; answer: ReviewAnswer }
  | { type: "confirm"; open: boolean }
  | { type: "applied"; answer: ApplyAnswer }
  | { type: "intent"; answer: IntentAnswer }
  | { type: "dismiss" };

const clone = (schema: DbSchema): DbSchema =>
  JSON.parse(JSON.stringify(schema)) as DbSchema;

/** Whether the draft differs from what the database holds. */
export function isDirty(state: DbPaneState): boolean {
  if (!state.loaded || !state.draft) return false;
  return JSON.stringify(state.draft) !== JSON.stringify(state.loaded.schema);
}

/** A sentence for a failed database request (by the API's error code). */
export function dbErrorMessage(code: string, detail?: string): string {
  switch (code) {
    case "db_disabled":
      return "This project has no database: the agent runs without Hasura (HASURA_BASE_URL is not set).";
    case "version_conflict":
      return "The database changed since you loaded it (the agent may have created a table). Reload, then redo your edits.";
    case "destructive_confirmation_required":
      return "This change deletes data. Confirm it to apply.";
    case "invalid_draft":
      return `The draft cannot be applied: ${detail ?? "it is not valid"}`;
    case "apply_failed":
      return detail ?? "The database refused the change; nothing was changed.";
    case "turn_running":
      return "The agent is working. Apply once its turn has finished.";
    case "read_only":
      return "You can look at the database. Ask the owner for edit access to change it.";
    case "model_unavailable":
      return "No model is configured on this agent, so changes cannot be described in words.";
    case "intent_failed":
      return `The model could not draft that change: ${detail ?? "no usable answer"}`;
    case "db_unreachable":
      return "The database is not reachable right now. Try again in a moment.";
    case "unknown_table":
      return "That table no longer exists. Reload the schema.";
    default:
      return detail
        ? `Something went wrong: ${detail}`
        : `Something went wrong (${code}).`;
  }
}

function editDraft(
  state: DbPaneState,
  edit: (draft: DbSchema) => string | undefined,
): DbPaneState {
  if (!state.draft) return state;
  const draft = clone(state.draft);
  const problem = edit(draft);
  if (problem) return { ...state, error: problem };
  // An edit makes any earlier review stale.
  return {
    ...state,
    draft,
    review: undefined,
    confirming: false,
    error: undefined,
    notice: undefined,
  };
}

function tableOf(draft: DbSchema, name: string) {
  return draft.tables.find((t) => t.name === name);
}

function addColumn(
  draft: DbSchema,
  tableName: string,
  column: NewColumn,
): string | undefined {
  const table = tableOf(draft, tableName);
  if (!table) return `There is no table ${tableName}.`;
  const taken = ["id", ...table.columns.map((c) => c.name)];
  const problem = nameProblem(column.name, taken);
  if (problem) return `Column name: ${problem}`;
  const added: DbColumn = {
    name: column.name,
    type: column.type,
    nullable: column.nullable,
  };
  if (
    column.default !== undefined &&
    column.default !== null &&
    column.default !== ""
  )
    added.default = column.default;
  table.columns.push(added);
  return undefined;
}

function withoutTable(draft: DbSchema, name: string): string | undefined {
  draft.tables = draft.tables.filter((t) => t.name !== name);
  draft.relationships = draft.relationships.filter(
    (r) => r.from_table !== name && r.to_table !== name,
  );
  return undefined;
}

function withoutColumn(
  draft: DbSchema,
  tableName: string,
  column: string,
): string | undefined {
  const table = tableOf(draft, tableName);
  if (!table) return undefined;
  if (table.columns.find((c) => c.name === column)?.is_primary)
    return "The primary key cannot be dropped.";
  table.columns = table.columns.filter((c) => c.name !== column);
  draft.relationships = draft.relationships.filter(
    (r) =>
      !(r.from_table === tableName && r.from_column === column) &&
      !(r.to_table === tableName && r.to_column === column),
  );
  return undefined;
}

function draftReducer(
  state: DbPaneState,
  action: DbAction,
): DbPaneState | undefined {
  switch (action.type) {
    case "add_table": {
      const next = editDraft(state, (d) => {
        const problem = nameProblem(
          action.name,
          d.tables.map((t) => t.name),
        );
        if (problem) return `Table name: ${problem}`;
        d.tables.push({ name: action.name, columns: [] });
        return undefined;
      });
      return next.error ? next : { ...next, selected: action.name };
    }
    case "drop_table": {
      const next = editDraft(state, (d) => withoutTable(d, action.name));
      return { ...next, selected: next.draft?.tables[0]?.name };
    }
    case "add_column":
      return editDraft(state, (d) => addColumn(d, action.table, action.column));
    case "drop_column":
      return editDraft(state, (d) =>
        withoutColumn(d, action.table, action.column),
      );
    case "set_type":
      return editDraft(state, (d) => {
        const column = tableOf(d, action.table)?.columns.find(
          (c) => c.name === action.column,
        );
        if (!column)
          return `There is no column ${action.table}.${action.column}.`;
        column.type = action.columnType;
        return undefined;
      });
    case "add_relationship":
      return editDraft(state, (d) => {
        const name = `${action.fromTable}_${action.fromColumn}_fkey`.slice(
          0,
          63,
        );
        if (d.relationships.some((r) => r.name === name))
          return `${action.fromTable}.${action.fromColumn} is already linked.`;
        d.relationships.push({
          name,
          from_table: action.fromTable,
          from_column: action.fromColumn,
          to_table: action.toTable,
          to_column: action.toColumn,
          on_delete: "NO ACTION",
          on_update: "NO ACTION",
        });
        return undefined;
      });
    case "drop_relationship":
      return editDraft(state, (d) => {
        d.relationships = d.relationships.filter((r) => r.name !== action.name);
        return undefined;
      });
    default:
      return undefined;
  }
}

export function dbPaneReducer(
  state: DbPaneState,
  action: DbAction,
): DbPaneState {
  const edited = draftReducer(state, action);
  if (edited) return edited;
  switch (action.type) {
    case "loading":
      return {
        ...state,
        phase: state.loaded ? state.phase : "loading",
        error: undefined,
      };
    case "loaded": {
      const keep =
        state.selected &&
        action.answer.schema.tables.some((t) => t.name === state.selected);
      return {
        ...state,
        phase: "ready",
        loaded: action.answer,
        draft: clone(action.answer.schema),
        selected: keep ? state.selected : action.answer.schema.tables[0]?.name,
        review: undefined,
        confirming: false,
        busy: undefined,
        error: undefined,
      };
    }
    case "failed": {
      const error = dbErrorMessage(action.code, action.detail);
      if (!state.loaded)
        return {
          ...state,
          phase: action.code === "db_disabled" ? "disabled" : "error",
          error,
          busy: undefined,
        };
      return { ...state, error, busy: undefined, confirming: false };
    }
    case "select":
      return { ...state, selected: action.table };
    case "reset":
      return state.loaded
        ? {
            ...state,
            draft: clone(state.loaded.schema),
            review: undefined,
            confirming: false,
            error: undefined,
          }
        : state;
    case "busy":
      return {
        ...state,
        busy: action.busy,
        error: action.busy ? undefined : state.error,
      };
    case "reviewed":
      return {
        ...state,
        busy: undefined,
        review: action.answer,
        confirming: false,
        error: undefined,
      };
    case "confirm":
      return { ...state, confirming: action.open };
    case "applied": {
      if (!state.loaded) return state;
      const loaded = {
        ...state.loaded,
        schema: action.answer.schema,
        version: action.answer.new_version,
      };
      const files = action.answer.migration_files.join(", ");
      return {
        ...state,
        loaded,
        draft: clone(action.answer.schema),
        review: undefined,
        confirming: false,
        busy: undefined,
        error: undefined,
        notice: action.answer.applied
          ? `Applied. Saved as ${files || "a migration"}${action.answer.warnings.length ? ` (${action.answer.warnings.join("; ")})` : ""}.`
          : "Nothing to apply: the draft matches the database.",
      };
    }
    case "intent":
      return {
        ...state,
        busy: undefined,
        draft: clone(action.answer.draft),
        review: undefined,
        confirming: false,
        error: undefined,
        notice: action.answer.needs_clarification
          ? action.answer.clarification_question ||
            action.answer.assistant_message
          : action.answer.assistant_message,
      };
    case "dismiss":
      return { ...state, error: undefined, notice: undefined };
    default:
      return state;
  }
}

/** A default for display: `'x'`, `true`, `now()`. */
export function formatDefault(value: DbDefault | undefined): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "object") return value.raw;
  if (typeof value === "string") return `'${value}'`;
  return String(value);
}

/** A cell of the rows table: JSON for objects, "NULL" for null. */
export function formatCell(value: unknown): string {
  if (value === null || value === undefined) return "NULL";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}
