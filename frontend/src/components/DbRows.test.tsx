// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import { allTestId, byTestId, change, cleanup, click, flush, press, queryTestId, render, stubFetch } from "../test/dom";
import { DbRows } from "./DbRows";

const ROWS = "/api/db/p1/tables/customers/rows";
const PAGE = (readOnly: boolean, reason: string | null = null) => ({
  table: "customers",
  columns: ["id", "name", "score"],
  rows: [
    { id: 1, name: "Ada", score: 3 },
    { id: 2, name: "Bo", score: null },
  ],
  total: 2,
  limit: 25,
  offset: 0,
  has_more: false,
  read_only: readOnly,
  read_only_reason: reason,
  primary_key: ["id"],
  column_info: [
    { name: "id", type: "bigserial", nullable: false, is_primary: true, has_default: true },
    { name: "name", type: "text", nullable: false, is_primary: false, has_default: false },
    { name: "score", type: "integer", nullable: true, is_primary: false, has_default: false },
  ],
  max_cell_chars: 2000,
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const cell = (column: string, index = 0) =>
  allTestId("db-cell-edit").filter((el) => el.dataset.column === column)[index] as HTMLElement;

describe("the rows view", () => {
  it("an editor edits a cell by its row's key, and reads the error of a refused value", async () => {
    const calls = stubFetch({
      [`GET ${ROWS}?limit=25&offset=0`]: { body: PAGE(false) },
      [`PATCH ${ROWS}`]: (call) =>
        (call.body as { values: { score?: unknown } }).values.score === 99
          ? { status: 409, body: { error: "row_rejected", detail: "score too high" } }
          : { body: { table: "customers", row: {} } },
    });
    render(<DbRows projectId="p1" table="customers" version="v1" />);
    await flush();
    expect(allTestId("db-cell-edit").map((el) => el.dataset.column)).toEqual(["name", "score", "name", "score"]);
    click(cell("name", 1));
    change(byTestId<HTMLInputElement>("db-cell-input"), "Bob");
    press("Enter", byTestId("db-cell-input"));
    await flush();
    expect(calls.find((c) => c.method === "PATCH")?.body).toEqual({ key: { id: 2 }, values: { name: "Bob" } });
    expect(calls.filter((c) => c.method === "GET")).toHaveLength(2); // reloaded
    click(cell("score"));
    change(byTestId<HTMLInputElement>("db-cell-input"), "lots");
    click(byTestId("db-cell-save"));
    expect(byTestId("db-row-error").textContent).toBe("score needs a whole number");
    change(byTestId<HTMLInputElement>("db-cell-input"), "99");
    click(byTestId("db-cell-save"));
    await flush();
    expect(byTestId("db-row-error").textContent).toBe("The database refused the change: score too high");
  });

  it("adds a row with only what was typed, and deletes one after a confirmation", async () => {
    const calls = stubFetch({
      [`GET ${ROWS}?limit=25&offset=0`]: { body: PAGE(false) },
      [`POST ${ROWS}`]: { status: 201, body: { table: "customers", row: {} } },
      [`DELETE ${ROWS}`]: { body: { table: "customers", deleted: 1 } },
    });
    render(<DbRows projectId="p1" table="customers" version="v1" />);
    await flush();
    const inputs = allTestId("db-new-row-input") as HTMLInputElement[];
    expect(inputs.map((el) => el.dataset.column)).toEqual(["name", "score"]); // not the serial key
    change(inputs[0] as HTMLInputElement, "Cy");
    click(byTestId("db-row-add"));
    await flush();
    expect(calls.find((c) => c.method === "POST")?.body).toEqual({ values: { name: "Cy" } });
    click(allTestId("db-row-delete")[1] as HTMLElement);
    expect(byTestId("db-row-delete-confirm").textContent).toContain("id = 2");
    expect(calls.some((c) => c.method === "DELETE")).toBe(false);
    click(byTestId("dialog-confirm"));
    await flush();
    expect(calls.find((c) => c.method === "DELETE")?.body).toEqual({ key: { id: 2 } });
  });

  it("a viewer sees why the rows are read-only and no edit controls", async () => {
    stubFetch({
      [`GET ${ROWS}?limit=25&offset=0`]: { body: PAGE(true, "you can view this project but not change it") },
    });
    render(<DbRows projectId="p1" table="customers" version="v1" />);
    await flush();
    expect(byTestId("db-rows-read-only").textContent).toBe("you can view this project but not change it");
    expect(byTestId("db-rows").textContent).toContain("Ada");
    for (const control of ["db-cell-edit", "db-new-row", "db-row-delete"]) expect(queryTestId(control)).toBeNull();
  });
});
