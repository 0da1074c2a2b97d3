/**
 * The Database pane: the project's tables, columns and relationships, a table's rows page
 * by page, and schema changes as draft -> review (SQL preview, destructive flags) -> apply
 * (destructive changes need a confirmation). State lives in `state/dbSchema.ts`.
 */
import { useCallback, useEffect, useReducer, useState } from "react";
import { ApiError } from "../api/http";
import { dbApi, type DbSchema } from "../api/db";
import {
  dbPaneReducer,
  initialDbPaneState,
  isDirty,
  type DbAction,
  type DbPaneState,
} from "../state/dbSchema";
import { DbDraftForms } from "./DbDraftForms";
import { DbRows } from "./DbRows";
import "./DatabasePane.css";

interface Props {
  hidden: boolean;
  projectId: string;
  readOnly: boolean;
  /** Changes when the project gets a new checkpoint (a turn may have created a table). */
  version: number;
}

function failed(err: unknown): DbAction {
  if (err instanceof ApiError)
    return { type: "failed", code: err.code, detail: err.detail };
  return { type: "failed", code: "network", detail: String(err) };
}

function TableList({
  state,
  dispatch,
}: {
  state: DbPaneState;
  dispatch: (a: DbAction) => void;
}) {
  const loaded = new Set(state.loaded?.schema.tables.map((t) => t.name));
  return (
    <ul className="db-tables" aria-label="Tables">
      {(state.draft?.tables ?? []).map((t) => (
        <li key={t.name}>
          <button
            className={
              t.name === state.selected ? "db-table active" : "db-table"
            }
            data-testid={`db-table-${t.name}`}
            onClick={() => dispatch({ type: "select", table: t.name })}
          >
            {t.name}
            {!loaded.has(t.name) && <span className="badge">new</span>}
          </button>
        </li>
      ))}
      {state.draft?.tables.length === 0 && (
        <li className="muted small">No tables yet.</li>
      )}
    </ul>
  );
}

function TableDetail({
  state,
  dispatch,
  readOnly,
}: {
  state: DbPaneState;
  dispatch: (a: DbAction) => void;
  readOnly: boolean;
}) {
  const table = state.draft?.tables.find((t) => t.name === state.selected);
  if (!table || !state.draft) return <p className="muted">Select a table.</p>;
  const before = state.loaded?.schema.tables.find((t) => t.name === table.name);
  const rels = state.draft.relationships.filter(
    (r) => r.from_table === table.name || r.to_table === table.name,
  );
  return (
    <div className="db-detail">
      <div className="db-detail-head">
        <h3>{table.name}</h3>
        {!readOnly && (
          <button
            className="btn ghost small danger"
            data-testid="db-drop-table"
            onClick={() => dispatch({ type: "drop_table", name: table.name })}
          >
            Drop table
          </button>
        )}
      </div>
      <table className="db-columns" data-testid="db-columns">
        <thead>
          <tr>
            <th>Column</th>
            <th>Type</th>
            <th>Null</th>
            <th>Default</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {!before && !table.columns.some((c) => c.is_primary) && (
            <tr className="muted">
              <td>id</td>
              <td>bigserial</td>
              <td>no</td>
              <td>(primary key, added automatically)</td>
              <td />
            </tr>
          )}
          {table.columns.map((c) => (
            <tr key={c.name} data-testid={`db-column-${c.name}`}>
              <td>
                {c.name}
                {c.is_primary && <span className="badge">key</span>}
                {before && !before.columns.some((b) => b.name === c.name) && (
                  <span className="badge">new</span>
                )}
              </td>
              <td>{c.type}</td>
              <td>{c.nullable ? "yes" : "no"}</td>
              <td className="mono">
                {c.default === undefined || c.default === null
                  ? ""
                  : typeof c.default === "object"
                    ? c.default.raw
                    : JSON.stringify(c.default)}
              </td>
              <td>
                {!readOnly && !c.is_primary && (
                  <button
                    className="btn ghost small danger"
                    aria-label={`Drop column ${c.name}`}
                    onClick={() =>
                      dispatch({
                        type: "drop_column",
                        table: table.name,
                        column: c.name,
                      })
                    }
                  >
                    Drop
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h4>Relationships</h4>
      {rels.length === 0 && <p className="muted small">None.</p>}
      <ul className="db-rels" data-testid="db-relationships">
        {rels.map((r) => (
          <li key={r.name}>
            <span className="mono">
              {r.from_table}.{r.from_column} → {r.to_table}.{r.to_column}
            </span>{" "}
            <span className="muted small">
              on delete {r.on_delete ?? "NO ACTION"}
            </span>
            {!readOnly && (
              <button
                className="btn ghost small"
                onClick={() =>
                  dispatch({ type: "drop_relationship", name: r.name })
                }
              >
                Remove
              </button>
            )}
          </li>
        ))}
      </ul>
    </div>
  );
}

function ReviewPanel({
  state,
  onApply,
  dispatch,
}: {
  state: DbPaneState;
  onApply: (confirm: boolean) => void;
  dispatch: (a: DbAction) => void;
}) {
  const review = state.review;
  if (!review) return null;
  return (
    <section className="db-review" aria-label="Review" data-testid="db-review">
      <h4>Review</h4>
      <p>{review.review.summary}</p>
      {review.destructive && (
        <div className="banner error" role="alert" data-testid="db-destructive">
          <strong>Deletes data:</strong>
          <ul>
            {review.destructive_details.map((d) => (
              <li key={d}>{d}</li>
            ))}
          </ul>
        </div>
      )}
      {review.warnings.map((w) => (
        <div key={w} className="banner warn">
          {w}
        </div>
      ))}
      <pre className="db-sql" data-testid="db-sql">
        {review.sql_preview.join("\n")}
      </pre>
      {state.confirming ? (
        <div
          className="db-confirm"
          role="alertdialog"
          aria-label="Confirm destructive change"
        >
          <span>This deletes data and cannot be undone. Apply anyway?</span>
          <button
            className="btn small danger-solid"
            data-testid="db-confirm-apply"
            onClick={() => onApply(true)}
            disabled={state.busy !== undefined}
          >
            Delete and apply
          </button>
          <button
            className="btn small"
            onClick={() => dispatch({ type: "confirm", open: false })}
          >
            Cancel
          </button>
        </div>
      ) : (
        <button
          className="btn primary small"
          data-testid="db-apply"
          disabled={state.busy !== undefined || review.operations.length === 0}
          onClick={() =>
            review.destructive
              ? dispatch({ type: "confirm", open: true })
              : onApply(false)
          }
        >
          {state.busy === "apply" ? "Applying…" : "Apply"}
        </button>
      )}
    </section>
  );
}

export function DatabasePane({ hidden, projectId, readOnly, version }: Props) {
  const [state, dispatch] = useReducer(dbPaneReducer, initialDbPaneState);
  const [tab, setTab] = useState<"structure" | "rows">("structure");
  const load = useCallback(() => {
    dispatch({ type: "loading" });
    dbApi.schema(projectId).then(
      (answer) => dispatch({ type: "loaded", answer }),
      (err: unknown) => dispatch(failed(err)),
    );
  }, [projectId]);
  const dirty = isDirty(state);
  // Reload when shown and after each checkpoint, unless the person has unapplied edits.
  useEffect(() => {
    if (!hidden && !dirty) load();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [hidden, version, load]);

  const withDraft = (fn: (base: string, draft: DbSchema) => Promise<void>) => {
    if (!state.loaded || !state.draft) return;
    fn(state.loaded.version, state.draft).catch((err: unknown) =>
      dispatch(failed(err)),
    );
  };
  const review = () =>
    withDraft(async (base, draft) => {
      dispatch({ type: "busy", busy: "review" });
      dispatch({
        type: "reviewed",
        answer: await dbApi.review(projectId, base, draft),
      });
    });
  const apply = (confirm: boolean) =>
    withDraft(async (base, draft) => {
      dispatch({ type: "busy", busy: "apply" });
      dispatch({
        type: "applied",
        answer: await dbApi.apply(projectId, base, draft, confirm),
      });
    });
  const intent = (text: string) =>
    withDraft(async (base, draft) => {
      dispatch({ type: "busy", busy: "intent" });
      dispatch({
        type: "intent",
        answer: await dbApi.intent(projectId, base, draft, text),
      });
    });

  return (
    <section
      className="db-pane"
      aria-label="Database"
      hidden={hidden}
      data-testid="db-pane"
    >
      {state.phase === "loading" && (
        <div className="pane-placeholder muted">Loading the database…</div>
      )}
      {(state.phase === "error" || state.phase === "disabled") && (
        <div className="pane-placeholder">
          <p role="alert" data-testid="db-error">
            {state.error}
          </p>
          {state.phase === "error" && (
            <button className="btn small" onClick={load}>
              Try again
            </button>
          )}
        </div>
      )}
      {state.phase === "ready" && (
        <>
          <div className="db-toolbar">
            <span
              className="muted small mono"
              title="The app's PostgreSQL schema"
            >
              {state.loaded?.db_schema}
            </span>
            <button
              className="btn ghost small"
              onClick={load}
              data-testid="db-reload"
            >
              Reload
            </button>
            {readOnly && <span className="badge">View only</span>}
            {dirty && <span className="badge">unapplied edits</span>}
          </div>
          {state.error && (
            <div className="banner error" role="alert" data-testid="db-error">
              {state.error}{" "}
              <button
                className="link-btn"
                onClick={() => dispatch({ type: "dismiss" })}
              >
                Dismiss
              </button>
            </div>
          )}
          {state.notice && (
            <div className="banner ok" role="status" data-testid="db-notice">
              {state.notice}
            </div>
          )}
          <div className="db-body">
            <aside className="db-sidebar">
              <TableList state={state} dispatch={dispatch} />
              {!readOnly && <DbDraftForms.AddTable dispatch={dispatch} />}
            </aside>
            <div className="db-main">
              <nav
                className="db-subtabs"
                role="tablist"
                aria-label="Table view"
              >
                <button
                  role="tab"
                  aria-selected={tab === "structure"}
                  className={tab === "structure" ? "tab active" : "tab"}
                  onClick={() => setTab("structure")}
                >
                  Structure
                </button>
                <button
                  role="tab"
                  aria-selected={tab === "rows"}
                  className={tab === "rows" ? "tab active" : "tab"}
                  onClick={() => setTab("rows")}
                  data-testid="db-tab-rows"
                >
                  Rows
                </button>
              </nav>
              {tab === "structure" && (
                <>
                  <TableDetail
                    state={state}
                    dispatch={dispatch}
                    readOnly={readOnly}
                  />
                  {!readOnly && state.selected && state.draft && (
                    <DbDraftForms.Edit state={state} dispatch={dispatch} />
                  )}
                  {!readOnly && (
                    <div className="db-actions">
                      <button
                        className="btn small"
                        data-testid="db-review-btn"
                        disabled={!dirty || state.busy !== undefined}
                        onClick={review}
                      >
                        {state.busy === "review"
                          ? "Reviewing…"
                          : "Review changes"}
                      </button>
                      <button
                        className="btn ghost small"
                        disabled={!dirty}
                        onClick={() => dispatch({ type: "reset" })}
                      >
                        Discard edits
                      </button>
                    </div>
                  )}
                  <ReviewPanel
                    state={state}
                    onApply={apply}
                    dispatch={dispatch}
                  />
                  {!readOnly && (
                    <DbDraftForms.Intent
                      busy={state.busy === "intent"}
                      onSubmit={intent}
                    />
                  )}
                </>
              )}
              {tab === "rows" &&
                state.selected &&
                state.loaded?.schema.tables.some(
                  (t) => t.name === state.selected,
                ) && (
                  <DbRows
                    projectId={projectId}
                    table={state.selected}
                    version={state.loaded.version}
                  />
                )}
              {tab === "rows" &&
                state.selected &&
                !state.loaded?.schema.tables.some(
                  (t) => t.name === state.selected,
                ) && (
                  <p className="muted">
                    This table exists only in your draft: apply it to see rows.
                  </p>
                )}
            </div>
          </div>
        </>
      )}
    </section>
  );
}
