/**
 * The database pane's API (`/api/db/{id}/…`, upstream §2.6 shapes plus `read_only` and a
 * rows route). See docs/database.md.
 */
import { request } from "./http";

export type DbDefault = boolean | number | string | { raw: string } | null;

export interface DbColumn {
  name: string;
  label?: string;
  type: string;
  nullable: boolean;
  is_primary?: boolean;
  default?: DbDefault;
}

export interface DbTable {
  name: string;
  label?: string;
  position?: { x: number; y: number };
  columns: DbColumn[];
}

export interface DbRelationship {
  name: string;
  from_table: string;
  from_column: string;
  to_table: string;
  to_column: string;
  on_delete?: string;
  on_update?: string;
}

export interface DbSchema {
  app_id?: string | null;
  schema_name: string;
  tables: DbTable[];
  relationships: DbRelationship[];
}

export interface SchemaAnswer {
  schema: DbSchema;
  version: string;
  db_schema: string;
  db_role: string;
  template_id: string;
  read_only: boolean;
}

export interface DbOperation {
  kind: string;
  table: string;
  column: string | null;
  sql: string;
  summary: string;
  destructive: boolean;
}

export interface ReviewAnswer {
  review: {
    summary: string;
    destructive: boolean;
    destructive_details: string[];
    warnings: string[];
  };
  operations: DbOperation[];
  warnings: string[];
  destructive: boolean;
  destructive_details: string[];
  sql_preview: string[];
  base_version: string;
}

export interface ApplyAnswer {
  applied: boolean;
  new_version: string;
  version: string;
  schema: DbSchema;
  migration_files: string[];
  checkpoint: { sha: string; title: string } | null;
  warnings: string[];
  operations: DbOperation[];
  sql_preview: string[];
}

export interface IntentAnswer {
  base_version: string;
  draft: DbSchema;
  assistant_message: string;
  change_cards: {
    id: string;
    title: string;
    description: string;
    kind: string;
    risk: string;
  }[];
  needs_clarification: boolean;
  clarification_question: string;
  clarification_options: { id: string; label: string }[];
  warnings: string[];
}

export interface RowsAnswer {
  table: string;
  columns: string[];
  rows: Record<string, unknown>[];
  total: number;
  limit: number;
  offset: number;
  has_more: boolean;
  read_only: boolean;
  /** Why rows cannot be changed here (a viewer; a table without a primary key). */
  read_only_reason?: string | null;
  primary_key?: string[];
  column_info?: RowColumn[];
  /** Longer text values are cut in `rows` (and cannot be edited here). */
  max_cell_chars?: number;
}

/** A column of the rows view, as the row editor needs it. */
export interface RowColumn {
  name: string;
  type: string;
  nullable: boolean;
  is_primary: boolean;
  has_default: boolean;
}

export type RowValues = Record<string, unknown>;

const base = (projectId: string) => `/api/db/${encodeURIComponent(projectId)}`;

const rowsPath = (projectId: string, table: string) =>
  `${base(projectId)}/tables/${encodeURIComponent(table)}/rows`;

export const dbApi = {
  schema: (projectId: string) =>
    request<SchemaAnswer>("GET", `${base(projectId)}/schema`),
  rows: (projectId: string, table: string, limit: number, offset: number) =>
    request<RowsAnswer>(
      "GET",
      `${base(projectId)}/tables/${encodeURIComponent(table)}/rows?limit=${limit}&offset=${offset}`,
    ),
  insertRow: (projectId: string, table: string, values: RowValues) =>
    request<{ table: string; row: RowValues | null }>("POST", rowsPath(projectId, table), { values }),
  updateRow: (projectId: string, table: string, key: RowValues, values: RowValues) =>
    request<{ table: string; row: RowValues | null }>("PATCH", rowsPath(projectId, table), { key, values }),
  deleteRow: (projectId: string, table: string, key: RowValues) =>
    request<{ table: string; deleted: number }>("DELETE", rowsPath(projectId, table), { key }),
  review: (projectId: string, baseVersion: string, draft: DbSchema) =>
    request<ReviewAnswer>("POST", `${base(projectId)}/schema/review`, {
      base_version: baseVersion,
      draft,
    }),
  apply: (
    projectId: string,
    baseVersion: string,
    draft: DbSchema,
    confirmDestructive: boolean,
  ) =>
    request<ApplyAnswer>("POST", `${base(projectId)}/schema/apply`, {
      base_version: baseVersion,
      draft,
      confirm_destructive: confirmDestructive,
    }),
  intent: (
    projectId: string,
    baseVersion: string,
    draft: DbSchema,
    intentText: string,
  ) =>
    request<IntentAnswer>("POST", `${base(projectId)}/schema/intent`, {
      base_version: baseVersion,
      draft,
      intent_text: intentText,
    }),
};
