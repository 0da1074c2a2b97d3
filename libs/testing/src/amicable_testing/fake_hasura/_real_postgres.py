"""The PostgreSQL side of the fake Hasura played by a real PostgreSQL
(:class:`~amicable_testing.postgres.PostgresServer`): ``run_sql`` runs the SQL as sent, in
one transaction, and answers in Hasura's format (every value as PostgreSQL's text). Used
where SQL must mean what it means on PostgreSQL (the schema editor's introspection and
DDL). GraphQL over it is not supported: tests that need GraphQL use the SQLite source.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ._errors import GraphqlError, HasuraError


def _text(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


class RealPostgresSource:
    """Hasura's source on a real PostgreSQL at ``url`` (one connection per request)."""

    def __init__(self, url: str) -> None:
        self._url = url

    @property
    def schemas(self) -> set[str]:
        """The schemas that exist."""
        with psycopg.connect(self._url, autocommit=True) as conn:
            return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}

    def table_names(self, schema: str) -> list[str]:
        """Tables that exist in ``schema``."""
        with psycopg.connect(self._url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                "AND table_type = 'BASE TABLE' ORDER BY 1",
                (schema,),
            ).fetchall()
        return [r[0] for r in rows]

    def run_sql(self, sql: str, read_only: bool = False) -> dict[str, Any]:
        """Run ``sql`` like Hasura's ``run_sql`` (one transaction; last result returned).

        Raises:
            HasuraError: ``400 postgres-error`` with PostgreSQL's message; rolled back.
        """
        try:
            with psycopg.connect(self._url, autocommit=True) as conn, conn.transaction():
                if read_only:
                    conn.execute("SET TRANSACTION READ ONLY")
                cur = conn.execute(sql.encode("utf-8"))
                result: dict[str, Any] = {"result_type": "CommandOk", "result": None}
                while True:
                    if cur.description is not None:
                        header = [d.name for d in cur.description]
                        rows = [[_text(v) for v in row] for row in cur.fetchall()]
                        result = {"result_type": "TuplesOk", "result": [header, *rows]}
                    else:
                        result = {"result_type": "CommandOk", "result": None}
                    if not cur.nextset():
                        return result
        except psycopg.Error as exc:
            raise HasuraError(400, "postgres-error", f"query execution failed: {exc}") from exc

    def columns(self, ref: tuple[str, str]) -> list[str]:
        """Not supported: GraphQL needs the SQLite source."""
        raise GraphqlError("unexpected", "GraphQL is not supported over real PostgreSQL")

    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """Not supported: GraphQL needs the SQLite source."""
        raise GraphqlError("unexpected", "GraphQL is not supported over real PostgreSQL")

    def execute(self, sql: str, params: list[Any]) -> Any:
        """Not supported: GraphQL needs the SQLite source."""
        raise GraphqlError("unexpected", "GraphQL is not supported over real PostgreSQL")
