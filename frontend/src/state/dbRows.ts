/**
 * Pure logic of the row editor in the database pane: which cells may be edited, turning
 * what a person typed into the JSON value a column takes, naming a row by its primary key,
 * the values of a new row, and readable errors. The agent checks everything again; this is
 * for a quick, specific answer while typing.
 */
import type { RowColumn, RowValues, RowsAnswer } from "../api/db";

export type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

const INT_TYPES = new Set(["integer", "bigint", "smallint", "serial", "bigserial"]);
const NUMBER_TYPES = new Set(["numeric", "real", "double precision"]);
const JSON_TYPES = new Set(["json", "jsonb"]);
const TEXT_TYPES = new Set(["text", "character varying", "character"]);

/** Whether rows of this page can be changed at all (the agent's answer decides). */
export function canEditRows(page: RowsAnswer): boolean {
  return !page.read_only && (page.primary_key ?? []).length > 0 && (page.column_info ?? []).length > 0;
}

/** The column description of `name` in `page`, if the agent sent one. */
export function columnOf(page: RowsAnswer, name: string): RowColumn | undefined {
  return (page.column_info ?? []).find((c) => c.name === name);
}

/** Whether one cell may be edited: not a key column, not a value the view has cut short. */
export function cellEditable(page: RowsAnswer, column: string, value: unknown): boolean {
  if (!canEditRows(page)) return false;
  const info = columnOf(page, column);
  if (!info || info.is_primary) return false;
  const max = page.max_cell_chars ?? Infinity;
  return !(typeof value === "string" && value.length > max);
}

/** The text an edit box starts with for a cell's value. */
export function cellText(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/**
 * What `text`, typed into a cell of `column`, means: `null` for an empty box (except in a
 * text column, where it is the empty string unless `asNull`), numbers for numeric columns,
 * `true`/`false` for booleans, parsed JSON for json columns, the text itself otherwise.
 */
export function parseCellInput(column: RowColumn, text: string, asNull = false): Parsed {
  const trimmed = text.trim();
  const isText = TEXT_TYPES.has(column.type);
  if (asNull || (!isText && trimmed === "")) {
    return column.nullable ? { ok: true, value: null } : { ok: false, error: `${column.name} cannot be empty` };
  }
  if (column.type === "boolean") {
    if (trimmed === "true" || trimmed === "false") return { ok: true, value: trimmed === "true" };
    return { ok: false, error: `${column.name} is true or false` };
  }
  if (INT_TYPES.has(column.type)) {
    if (!/^-?\d+$/.test(trimmed)) return { ok: false, error: `${column.name} needs a whole number` };
    const n = Number(trimmed);
    return { ok: true, value: Number.isSafeInteger(n) ? n : trimmed };
  }
  if (NUMBER_TYPES.has(column.type)) {
    if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(trimmed)) return { ok: false, error: `${column.name} needs a number` };
    return { ok: true, value: trimmed };
  }
  if (JSON_TYPES.has(column.type)) {
    try {
      return { ok: true, value: JSON.parse(trimmed) as unknown };
    } catch {
      return { ok: false, error: `${column.name} needs JSON (e.g. {"a": 1} or "text")` };
    }
  }
  return { ok: true, value: text };
}

/** The primary key values naming `row` (what PATCH and DELETE send). */
export function rowKey(page: RowsAnswer, row: RowValues): RowValues {
  const key: RowValues = {};
  for (const name of page.primary_key ?? []) key[name] = row[name];
  return key;
}

/**
 * The values of a new row from the form's inputs (`column -> text`): a column left empty is
 * left out when it has a default or may be empty (the database fills it in), else it is an
 * error. Returns the values or the first error.
 */
export function newRowValues(
  columns: RowColumn[],
  inputs: Record<string, string>,
): { ok: true; values: RowValues } | { ok: false; error: string } {
  const values: RowValues = {};
  for (const column of columns) {
    const text = inputs[column.name] ?? "";
    if (text === "") {
      if (column.has_default || column.nullable) continue;
      return { ok: false, error: `${column.name} is required` };
    }
    const parsed = parseCellInput(column, text);
    if (!parsed.ok) return parsed;
    values[column.name] = parsed.value;
  }
  return { ok: true, values };
}

/** A sentence for a failed row change (by the API's error code). */
export function rowErrorMessage(code: string, detail?: string): string {
  switch (code) {
    case "read_only":
      return "You can view this project but not change its data.";
    case "read_only_table":
      return detail ?? "This table has no primary key, so its rows cannot be changed here.";
    case "row_not_found":
      return "That row no longer exists (someone or the app may have deleted it). Reload the rows.";
    case "row_rejected":
      return `The database refused the change: ${detail ?? "it breaks a rule of the table"}`;
    case "invalid_value":
    case "invalid_key":
    case "unknown_column":
    case "key_change":
      return detail ?? "That value does not fit the column.";
    case "too_large":
      return "That is too much data for one row change.";
    default:
      return detail ? `Could not change the row: ${detail}` : `Could not change the row (${code}).`;
  }
}
