import { describe, expect, it } from "vitest";
import type {
  ApplyAnswer,
  DbSchema,
  ReviewAnswer,
  SchemaAnswer,
} from "../api/db";
import {
  dbErrorMessage,
  dbPaneReducer,
  formatCell,
  initialDbPaneState,
  isDirty,
  nameProblem,
  type DbAction,
  type DbPaneState,
} from "./dbSchema";

const SCHEMA: DbSchema = {
  schema_name: "app_0123456789ab",
  tables: [
    {
      name: "customers",
      columns: [
        {
          name: "id",
          type: "bigserial",
          nullable: false,
          is_primary: true,
          default: null,
        },
        {
          name: "name",
          type: "text",
          nullable: false,
          is_primary: false,
          default: null,
        },
      ],
    },
    {
      name: "orders",
      columns: [
        {
          name: "id",
          type: "bigserial",
          nullable: false,
          is_primary: true,
          default: null,
        },
        {
          name: "customer_id",
          type: "bigint",
          nullable: true,
          is_primary: false,
          default: null,
        },
      ],
    },
  ],
  relationships: [
    {
      name: "orders_customer_id_fkey",
      from_table: "orders",
      from_column: "customer_id",
      to_table: "customers",
      to_column: "id",
    },
  ],
};
const LOADED: SchemaAnswer = {
  schema: SCHEMA,
  version: "v1",
  db_schema: SCHEMA.schema_name,
  db_role: SCHEMA.schema_name,
  template_id: "vite",
  read_only: false,
};

const run = (...actions: DbAction[]): DbPaneState =>
  actions.reduce(
    dbPaneReducer,
    dbPaneReducer(initialDbPaneState, { type: "loaded", answer: LOADED }),
  );

const review = (destructive: boolean): ReviewAnswer => ({
  review: {
    summary: "1 change(s)",
    destructive,
    destructive_details: destructive ? ["Drop table orders"] : [],
    warnings: [],
  },
  operations: [
    {
      kind: "add_column",
      table: "customers",
      column: "email",
      sql: "ALTER …",
      summary: "Add",
      destructive,
    },
  ],
  warnings: [],
  destructive,
  destructive_details: destructive ? ["Drop table orders"] : [],
  sql_preview: ["ALTER …"],
  base_version: "v1",
});

describe("the database pane's state", () => {
  it("loads a schema as a clean draft with the first table selected", () => {
    const state = run();
    expect(state.phase).toBe("ready");
    expect(state.selected).toBe("customers");
    expect(isDirty(state)).toBe(false);
    expect(state.draft).not.toBe(LOADED.schema); // a copy: edits never touch the loaded schema
  });

  it("adds a table and a column, marks the draft dirty, and discarding restores it", () => {
    const state = run(
      { type: "add_table", name: "products" },
      {
        type: "add_column",
        table: "products",
        column: {
          name: "price",
          type: "numeric",
          nullable: true,
          default: 9.5,
        },
      },
    );
    expect(state.selected).toBe("products");
    expect(state.draft?.tables.at(-1)).toEqual({
      name: "products",
      columns: [
        { name: "price", type: "numeric", nullable: true, default: 9.5 },
      ],
    });
    expect(isDirty(state)).toBe(true);
    expect(LOADED.schema.tables).toHaveLength(2);
    const reset = dbPaneReducer(state, { type: "reset" });
    expect(isDirty(reset)).toBe(false);
  });

  it("refuses bad and duplicate names with a readable error and keeps the draft", () => {
    for (const name of [
      "Users",
      "1abc",
      'x"; drop',
      "a b",
      "",
      "x".repeat(64),
    ]) {
      const state = run({ type: "add_table", name });
      expect(state.error).toMatch(/^Table name: Use 1-63 lower case letters/);
      expect(isDirty(state)).toBe(false);
    }
    expect(run({ type: "add_table", name: "orders" }).error).toBe(
      "Table name: orders already exists.",
    );
    const dup = run({
      type: "add_column",
      table: "customers",
      column: { name: "name", type: "text", nullable: true },
    });
    expect(dup.error).toBe("Column name: name already exists.");
    expect(nameProblem("ok_name")).toBeUndefined();
  });

  it("dropping a table or a linked column drops its relationships too; keys cannot be dropped", () => {
    const dropped = run({ type: "drop_table", name: "customers" });
    expect(dropped.draft?.tables.map((t) => t.name)).toEqual(["orders"]);
    expect(dropped.draft?.relationships).toEqual([]);
    expect(dropped.selected).toBe("orders");
    const col = run({
      type: "drop_column",
      table: "orders",
      column: "customer_id",
    });
    expect(col.draft?.relationships).toEqual([]);
    const key = run({ type: "drop_column", table: "orders", column: "id" });
    expect(key.error).toBe("The primary key cannot be dropped.");
    expect(key.draft?.tables[1]?.columns).toHaveLength(2);
  });

  it("an edit makes the review stale; a destructive review needs confirmation", () => {
    const reviewed = run(
      { type: "busy", busy: "review" },
      { type: "reviewed", answer: review(true) },
    );
    expect(reviewed.busy).toBeUndefined();
    expect(reviewed.review?.destructive).toBe(true);
    const confirming = dbPaneReducer(reviewed, { type: "confirm", open: true });
    expect(confirming.confirming).toBe(true);
    const edited = dbPaneReducer(confirming, {
      type: "add_table",
      name: "later",
    });
    expect(edited.review).toBeUndefined();
    expect(edited.confirming).toBe(false);
  });

  it("an applied change becomes the loaded schema and names its migration file", () => {
    const after: DbSchema = {
      ...SCHEMA,
      tables: [...SCHEMA.tables, { name: "products", columns: [] }],
    };
    const answer: ApplyAnswer = {
      applied: true,
      new_version: "v2",
      version: "v2",
      schema: after,
      migration_files: ["/db/migrations/20261207_add.sql"],
      checkpoint: { sha: "abc1234", title: "Database schema update" },
      warnings: [],
      operations: [],
      sql_preview: [],
    };
    const state = run(
      { type: "add_table", name: "products" },
      { type: "applied", answer },
    );
    expect(state.loaded?.version).toBe("v2");
    expect(isDirty(state)).toBe(false);
    expect(state.notice).toBe(
      "Applied. Saved as /db/migrations/20261207_add.sql.",
    );
  });

  it("errors become sentences; a missing database is its own phase", () => {
    const disabled = dbPaneReducer(initialDbPaneState, {
      type: "failed",
      code: "db_disabled",
    });
    expect(disabled.phase).toBe("disabled");
    expect(disabled.error).toContain("no database");
    const failed = run({
      type: "failed",
      code: "destructive_confirmation_required",
    });
    expect(failed.phase).toBe("ready");
    expect(failed.error).toBe("This change deletes data. Confirm it to apply.");
    expect(dbErrorMessage("invalid_draft", "column x: unknown type")).toBe(
      "The draft cannot be applied: column x: unknown type",
    );
    expect(dbErrorMessage("version_conflict")).toMatch(
      /changed since you loaded it/,
    );
    expect(dbErrorMessage("weird", "boom")).toBe("Something went wrong: boom");
  });

  it("formats cells for the rows table", () => {
    expect(formatCell(null)).toBe("NULL");
    expect(formatCell({ a: 1 })).toBe('{"a":1}');
    expect(formatCell(false)).toBe("false");
  });
});
