import { describe, expect, it } from "vitest";
import type { RowColumn, RowsAnswer } from "../api/db";
import {
  canEditRows,
  cellEditable,
  cellText,
  newRowValues,
  parseCellInput,
  rowErrorMessage,
  rowKey,
} from "./dbRows";

const col = (name: string, type: string, extra: Partial<RowColumn> = {}): RowColumn => ({
  name,
  type,
  nullable: true,
  is_primary: false,
  has_default: false,
  ...extra,
});

const ID = col("id", "bigserial", { nullable: false, is_primary: true, has_default: true });
const NAME = col("name", "text", { nullable: false });
const COLUMNS = [ID, NAME, col("vip", "boolean", { has_default: true }), col("score", "integer"), col("doc", "jsonb")];

const PAGE: RowsAnswer = {
  table: "customers",
  columns: COLUMNS.map((c) => c.name),
  rows: [{ id: 1, name: "Ada", vip: false, score: 3, doc: { a: 1 } }],
  total: 1,
  limit: 25,
  offset: 0,
  has_more: false,
  read_only: false,
  read_only_reason: null,
  primary_key: ["id"],
  column_info: COLUMNS,
  max_cell_chars: 10,
};

describe("which rows and cells can be edited", () => {
  it("an editor edits every cell but the key and cut-short values", () => {
    expect(canEditRows(PAGE)).toBe(true);
    expect(cellEditable(PAGE, "name", "Ada")).toBe(true);
    expect(cellEditable(PAGE, "id", 1)).toBe(false);
    expect(cellEditable(PAGE, "name", "x".repeat(11))).toBe(false);
    expect(cellEditable(PAGE, "ghost", "x")).toBe(false);
  });

  it("a viewer, a table without a key and an old agent edit nothing", () => {
    for (const page of [
      { ...PAGE, read_only: true, read_only_reason: "you can view this project but not change it" },
      { ...PAGE, primary_key: [] },
      { ...PAGE, column_info: undefined, primary_key: undefined },
    ]) {
      expect(canEditRows(page)).toBe(false);
      expect(cellEditable(page, "name", "Ada")).toBe(false);
    }
  });

  it("names a row by its primary key", () => {
    expect(rowKey(PAGE, { id: 1, name: "Ada" })).toEqual({ id: 1 });
    const composite = { ...PAGE, primary_key: ["a", "b"] };
    expect(rowKey(composite, { a: 1, b: "x", c: 3 })).toEqual({ a: 1, b: "x" });
  });
});

describe("what a typed value means", () => {
  it("converts by column type", () => {
    expect(parseCellInput(col("n", "integer"), " 42 ")).toEqual({ ok: true, value: 42 });
    expect(parseCellInput(col("n", "bigint"), "9007199254740993")).toEqual({ ok: true, value: "9007199254740993" });
    expect(parseCellInput(col("n", "numeric"), "12.50")).toEqual({ ok: true, value: "12.50" });
    expect(parseCellInput(col("b", "boolean"), "true")).toEqual({ ok: true, value: true });
    expect(parseCellInput(col("j", "jsonb"), '{"a": [1]}')).toEqual({ ok: true, value: { a: [1] } });
    expect(parseCellInput(col("t", "text"), " spaced ")).toEqual({ ok: true, value: " spaced " });
    expect(parseCellInput(col("d", "date"), "2026-01-02")).toEqual({ ok: true, value: "2026-01-02" });
  });

  it("empty means NULL except in text, where NULL is asked for", () => {
    expect(parseCellInput(col("n", "integer"), "")).toEqual({ ok: true, value: null });
    expect(parseCellInput(col("t", "text"), "")).toEqual({ ok: true, value: "" });
    expect(parseCellInput(col("t", "text"), "x", true)).toEqual({ ok: true, value: null });
    expect(parseCellInput(NAME, "", true)).toEqual({ ok: false, error: "name cannot be empty" });
  });

  it("refuses what does not fit, with the column's name", () => {
    for (const [column, text] of [
      [col("n", "integer"), "1.5"],
      [col("n", "integer"), "1; DROP TABLE x"],
      [col("n", "numeric"), "abc"],
      [col("b", "boolean"), "yes"],
      [col("j", "jsonb"), "{not json"],
    ] as const) {
      const parsed = parseCellInput(column, text);
      expect(parsed.ok).toBe(false);
      if (!parsed.ok) expect(parsed.error).toContain(column.name);
    }
  });

  it("shows a cell's value as editable text", () => {
    expect(cellText(null)).toBe("");
    expect(cellText({ a: 1 })).toBe('{"a":1}');
    expect(cellText(false)).toBe("false");
  });
});

describe("a new row", () => {
  it("leaves out empty columns with defaults or NULL, and requires the rest", () => {
    expect(newRowValues(COLUMNS, { name: "Bo", score: "7" })).toEqual({ ok: true, values: { name: "Bo", score: 7 } });
    expect(newRowValues(COLUMNS, { score: "7" })).toEqual({ ok: false, error: "name is required" });
    expect(newRowValues(COLUMNS, { name: "Bo", vip: "maybe" })).toEqual({ ok: false, error: "vip is true or false" });
  });
});

describe("row errors", () => {
  it("says what happened", () => {
    expect(rowErrorMessage("read_only")).toMatch(/view this project/);
    expect(rowErrorMessage("row_not_found")).toMatch(/no longer exists/);
    expect(rowErrorMessage("row_rejected", "duplicate key")).toBe("The database refused the change: duplicate key");
    expect(rowErrorMessage("invalid_value", "column score (integer) needs a whole number")).toMatch(/score/);
    expect(rowErrorMessage("too_large")).toMatch(/too much/);
    expect(rowErrorMessage("weird")).toBe("Could not change the row (weird).");
  });
});
