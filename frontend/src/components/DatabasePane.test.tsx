// @vitest-environment jsdom
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  byTestId,
  change,
  cleanup,
  click,
  flush,
  queryTestId,
  render,
  stubFetch,
  submit,
  type FetchCall,
} from "../test/dom";
import { DatabasePane } from "./DatabasePane";

const SCHEMA = {
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
      ],
    },
  ],
  relationships: [],
};
const LOADED = {
  schema: SCHEMA,
  version: "v1",
  db_schema: "app_0123456789ab",
  db_role: "app_0123456789ab",
  template_id: "vite",
  read_only: false,
};
const REVIEW = (destructive: boolean) => ({
  review: {
    summary: "1 change(s)",
    destructive,
    destructive_details: destructive
      ? ["Drop table customers and all its rows"]
      : [],
    warnings: [],
  },
  operations: [
    {
      kind: "x",
      table: "customers",
      column: null,
      sql: "SQL;",
      summary: "s",
      destructive,
    },
  ],
  warnings: [],
  destructive,
  destructive_details: destructive
    ? ["Drop table customers and all its rows"]
    : [],
  sql_preview: [
    'ALTER TABLE "app_0123456789ab"."customers" ADD COLUMN "email" text;',
  ],
  base_version: "v1",
});

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

function draftOf(call: FetchCall): {
  tables: { name: string; columns: { name: string }[] }[];
} {
  return (
    call.body as {
      draft: { tables: { name: string; columns: { name: string }[] }[] };
    }
  ).draft;
}

describe("the Database pane", () => {
  it("shows tables, reviews a new column with its SQL and applies it", async () => {
    const calls = stubFetch({
      "GET /api/db/p1/schema": { body: LOADED },
      "POST /api/db/p1/schema/review": { body: REVIEW(false) },
      "POST /api/db/p1/schema/apply": {
        body: {
          applied: true,
          new_version: "v2",
          version: "v2",
          schema: SCHEMA,
          migration_files: ["/db/migrations/1_add.sql"],
          checkpoint: null,
          warnings: [],
          operations: [],
          sql_preview: [],
        },
      },
    });
    render(
      <DatabasePane
        hidden={false}
        projectId="p1"
        readOnly={false}
        version={0}
      />,
    );
    await flush();
    expect(byTestId("db-table-customers").textContent).toBe("customers");
    change(byTestId<HTMLInputElement>("db-new-column"), "email");
    submit(byTestId("db-add-column").closest("form") as HTMLFormElement);
    expect(queryTestId("db-column-email")).not.toBeNull();
    click(byTestId("db-review-btn"));
    await flush();
    expect(byTestId("db-sql").textContent).toContain('ADD COLUMN "email" text');
    expect(queryTestId("db-destructive")).toBeNull();
    const reviewCall = calls.find((c) => c.path.endsWith("/review"));
    expect(
      reviewCall && draftOf(reviewCall).tables[0]?.columns.map((c) => c.name),
    ).toEqual(["id", "email"]);
    click(byTestId("db-apply"));
    await flush();
    const applyCall = calls.find((c) => c.path.endsWith("/apply"));
    expect(applyCall?.body).toMatchObject({
      base_version: "v1",
      confirm_destructive: false,
    });
    expect(byTestId("db-notice").textContent).toContain(
      "/db/migrations/1_add.sql",
    );
  });

  it("asks for confirmation before a destructive apply, and says why an apply failed", async () => {
    const calls = stubFetch({
      "GET /api/db/p1/schema": { body: LOADED },
      "POST /api/db/p1/schema/review": { body: REVIEW(true) },
      "POST /api/db/p1/schema/apply": {
        status: 409,
        body: { error: "turn_running", detail: "wait" },
      },
    });
    render(
      <DatabasePane
        hidden={false}
        projectId="p1"
        readOnly={false}
        version={0}
      />,
    );
    await flush();
    click(byTestId("db-drop-table"));
    click(byTestId("db-review-btn"));
    await flush();
    expect(byTestId("db-destructive").textContent).toContain(
      "Drop table customers",
    );
    click(byTestId("db-apply"));
    expect(calls.some((c) => c.path.endsWith("/apply"))).toBe(false); // only the confirmation opened
    click(byTestId("db-confirm-apply"));
    await flush();
    expect(calls.find((c) => c.path.endsWith("/apply"))?.body).toMatchObject({
      confirm_destructive: true,
    });
    expect(byTestId("db-error").textContent).toContain("The agent is working");
  });

  it("is read-only for viewers and explains a missing database", async () => {
    stubFetch({
      "GET /api/db/p1/schema": { body: { ...LOADED, read_only: true } },
    });
    render(
      <DatabasePane
        hidden={false}
        projectId="p1"
        readOnly={true}
        version={0}
      />,
    );
    await flush();
    expect(queryTestId("db-add-table")).toBeNull();
    expect(queryTestId("db-review-btn")).toBeNull();
    expect(queryTestId("db-drop-table")).toBeNull();
    cleanup();
    stubFetch({
      "GET /api/db/p2/schema": {
        status: 404,
        body: { error: "db_disabled", detail: "x" },
      },
    });
    render(
      <DatabasePane
        hidden={false}
        projectId="p2"
        readOnly={false}
        version={0}
      />,
    );
    await flush();
    expect(byTestId("db-error").textContent).toContain("no database");
  });
});
