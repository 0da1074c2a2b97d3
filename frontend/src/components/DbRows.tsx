/** A table's rows, a page at a time; editors edit cells, add and delete rows (DbRowEdit),
 * viewers and tables without a primary key are read-only with the reason shown. Key it by
 * table: a new table starts at its first page. */
import { useEffect, useState } from "react";
import { ApiError } from "../api/http";
import { dbApi, type RowsAnswer } from "../api/db";
import { dbErrorMessage, formatCell } from "../state/dbSchema";
import { canEditRows, cellEditable, columnOf, rowKey } from "../state/dbRows";
import { DeleteRowButton, EditableCell, NewRowForm } from "./DbRowEdit";

export const PAGE_SIZE = 25;

export function DbRows({
  projectId,
  table,
  version,
}: {
  projectId: string;
  table: string;
  version: string;
}) {
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<RowsAnswer | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [rowError, setRowError] = useState<string | undefined>();
  const [reloads, setReloads] = useState(0);
  useEffect(() => {
    let live = true;
    dbApi.rows(projectId, table, PAGE_SIZE, offset).then(
      (answer) => {
        if (!live) return;
        setError(undefined);
        setPage(answer);
      },
      (err: unknown) =>
        live &&
        setError(
          err instanceof ApiError
            ? dbErrorMessage(err.code, err.detail)
            : String(err),
        ),
    );
    return () => {
      live = false;
    };
  }, [projectId, table, offset, version, reloads]);
  if (error) return <p role="alert">{error}</p>;
  if (!page || page.table !== table)
    return <p className="muted">Loading rows…</p>;
  const last = Math.min(page.offset + page.rows.length, page.total);
  const editing = canEditRows(page);
  const target = {
    projectId,
    table,
    onChanged: () => {
      setRowError(undefined);
      setReloads((n) => n + 1);
    },
    onError: setRowError,
  };
  return (
    <div className="db-rows" data-testid="db-rows">
      <div className="db-rows-head">
        <span className="muted small" data-testid="db-rows-range">
          {page.total === 0
            ? "No rows"
            : `Rows ${page.offset + 1}–${last} of ${page.total}`}
        </span>
        <button
          className="btn small"
          disabled={offset === 0}
          onClick={() => setOffset(Math.max(0, offset - PAGE_SIZE))}
        >
          Previous
        </button>
        <button
          className="btn small"
          disabled={!page.has_more}
          onClick={() => setOffset(offset + PAGE_SIZE)}
          data-testid="db-rows-next"
        >
          Next
        </button>
      </div>
      {page.read_only && page.read_only_reason && (
        <p className="muted small" data-testid="db-rows-read-only">
          {page.read_only_reason}
        </p>
      )}
      {rowError && (
        <p role="alert" className="bad small" data-testid="db-row-error">
          {rowError}
        </p>
      )}
      {editing && <NewRowForm target={target} columns={(page.column_info ?? []).filter((c) => !c.type.endsWith("serial"))} />}
      <div className="db-rows-scroll">
        <table className="db-columns">
          <thead>
            <tr>
              {page.columns.map((c) => (
                <th key={c}>{c}</th>
              ))}
              {editing && <th aria-label="Row actions" />}
            </tr>
          </thead>
          <tbody>
            {page.rows.map((row, i) => (
              <tr key={i}>
                {page.columns.map((c) => {
                  const info = columnOf(page, c);
                  return (
                    <td
                      key={c}
                      className={row[c] === null ? "muted mono" : "mono"}
                    >
                      {info && cellEditable(page, c, row[c]) ? (
                        <EditableCell
                          target={target}
                          column={info}
                          rowKey={rowKey(page, row)}
                          value={row[c]}
                        />
                      ) : (
                        formatCell(row[c])
                      )}
                    </td>
                  );
                })}
                {editing && (
                  <td>
                    <DeleteRowButton target={target} rowKey={rowKey(page, row)} />
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
