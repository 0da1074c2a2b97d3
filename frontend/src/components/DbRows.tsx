/** A table's rows, a page at a time (read-only). Key it by table: a new table starts at
 * its first page. */
import { useEffect, useState } from "react";
import { ApiError } from "../api/http";
import { dbApi, type RowsAnswer } from "../api/db";
import { dbErrorMessage, formatCell } from "../state/dbSchema";

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
  }, [projectId, table, offset, version]);
  if (error) return <p role="alert">{error}</p>;
  if (!page || page.table !== table)
    return <p className="muted">Loading rows…</p>;
  const last = Math.min(page.offset + page.rows.length, page.total);
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
      <div className="db-rows-scroll">
        <table className="db-columns">
          <thead>
            <tr>
              {page.columns.map((c) => (
                <th key={c}>{c}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {page.rows.map((row, i) => (
              <tr key={i}>
                {page.columns.map((c) => (
                  <td
                    key={c}
                    className={row[c] === null ? "muted mono" : "mono"}
                  >
                    {formatCell(row[c])}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
