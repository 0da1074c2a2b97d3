"""The PostgreSQL side of the fake Hasura, played by an in-memory SQLite.

Postgres schemas become table-name prefixes (``"s"."t"`` -> ``"s__t"``),
``information_schema.tables`` is a view over them, ``E'...'`` literals, ``now()``,
``serial``, ``CREATE/DROP SCHEMA``, ``TRUNCATE`` and ``DROP TABLE … CASCADE`` are translated:
enough for the agent's provisioning SQL and for tests that create tables.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any, Protocol

from ._errors import HasuraError

_LITERAL = re.compile(r"([Ee])?'((?:[^'\\]|''|\\.)*)'", re.DOTALL)
_QUALIFIED = re.compile(r'"?([A-Za-z_][A-Za-z0-9_]*)"?\s*\.\s*"?([A-Za-z_][A-Za-z0-9_]*)"?')
_CREATE_SCHEMA = re.compile(r'^\s*CREATE\s+SCHEMA\s+(?:IF\s+NOT\s+EXISTS\s+)?"?(\w+)"?\s*$', re.I)
_DROP_SCHEMA = re.compile(
    r'^\s*DROP\s+SCHEMA\s+(?:IF\s+EXISTS\s+)?"?(\w+)"?(?:\s+CASCADE)?\s*$', re.I
)
_TRUNCATE = re.compile(
    r"^\s*TRUNCATE\s+(?:TABLE\s+)?(.+?)(?:\s+(?:RESTART|CONTINUE)\s+IDENTITY)?"
    r"(?:\s+(?:CASCADE|RESTRICT))?\s*$",
    re.I | re.S,
)
_DROP_TABLE_CASCADE = re.compile(
    r"^(\s*DROP\s+TABLE\s+.+?)\s+(?:CASCADE|RESTRICT)\s*$", re.I | re.S
)


class Source(Protocol):
    """What the metadata and GraphQL parts need of the database (SQLite or PostgreSQL)."""

    @property
    def schemas(self) -> set[str]: ...
    def table_names(self, schema: str) -> list[str]: ...
    def run_sql(self, sql: str, read_only: bool = False) -> dict[str, Any]: ...
    def columns(self, ref: tuple[str, str]) -> list[str]: ...
    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]: ...
    def execute(self, sql: str, params: list[Any]) -> Any: ...


def _split_literals(sql: str) -> list[tuple[bool, str]]:
    """``(is_literal, text)`` pieces; literals already converted to SQLite syntax."""
    out: list[tuple[bool, str]] = []
    pos = 0
    for m in _LITERAL.finditer(sql):
        out.append((False, sql[pos : m.start()]))
        raw = m.group(2)
        if m.group(1):
            value = re.sub(r"\\(.)", r"\1", raw.replace("''", "'"), flags=re.DOTALL)
        else:
            value = raw.replace("''", "'")
        out.append((True, "'" + value.replace("'", "''") + "'"))
        pos = m.end()
    out.append((False, sql[pos:]))
    return out


def _statements(sql: str) -> list[list[tuple[bool, str]]]:
    stmts: list[list[tuple[bool, str]]] = [[]]
    for is_lit, text in _split_literals(sql):
        if is_lit:
            stmts[-1].append((True, text))
            continue
        parts = text.split(";")
        stmts[-1].append((False, parts[0]))
        for part in parts[1:]:
            stmts.append([(False, part)])
    return [s for s in stmts if "".join(t for _, t in s).strip()]


class PostgresSource:
    """The database behind Hasura's source.

    Attributes:
        schemas: the Postgres schemas that exist.
    """

    def __init__(self) -> None:
        self.schemas: set[str] = {"public", "information_schema"}
        self._db = sqlite3.connect(":memory:", isolation_level=None)
        self._db.execute(
            "CREATE VIEW information_schema__tables AS SELECT "
            "substr(name, 1, instr(name, '__') - 1) AS table_schema, "
            "substr(name, instr(name, '__') + 2) AS table_name, "
            "'BASE TABLE' AS table_type FROM sqlite_master "
            "WHERE type = 'table' AND instr(name, '__') > 1"
        )

    def table_names(self, schema: str) -> list[str]:
        """Tables that exist in ``schema``."""
        rows = self._db.execute(
            "SELECT table_name FROM information_schema__tables WHERE table_schema = ?", (schema,)
        ).fetchall()
        return sorted(r[0] for r in rows)

    def _translate(self, stmt: list[tuple[bool, str]]) -> str | None:
        code = "".join(t for lit, t in stmt if not lit)
        if m := _CREATE_SCHEMA.match(code):
            self.schemas.add(m.group(1))
            return None
        if m := _DROP_SCHEMA.match(code):
            schema = m.group(1)
            for table in self.table_names(schema):
                self._db.execute(f'DROP TABLE "{schema}__{table}"')
            self.schemas.discard(schema)
            return None

        def qualify(m: re.Match[str]) -> str:
            if m.group(1) in self.schemas:
                return f'"{m.group(1)}__{m.group(2)}"'
            return m.group(0)

        out = []
        for is_lit, text in stmt:
            if not is_lit:
                text = _QUALIFIED.sub(qualify, text)
                text = re.sub(r"\bnow\(\)", "CURRENT_TIMESTAMP", text, flags=re.I)
                text = re.sub(r"\b(big)?serial\b", "INTEGER", text, flags=re.I)
            out.append(text)
        sql = "".join(out)
        # Postgres-only statement forms SQLite lacks: TRUNCATE (one table) and DROP TABLE's
        # CASCADE/RESTRICT (the fake has no dependent objects to cascade to).
        if m := _TRUNCATE.match(sql):
            return f"DELETE FROM {m.group(1)}"
        if m := _DROP_TABLE_CASCADE.match(sql):
            return m.group(1)
        return sql

    def run_sql(self, sql: str, read_only: bool = False) -> dict[str, Any]:
        """Run ``sql`` like Hasura's ``run_sql`` (one transaction; last result returned).

        Raises:
            HasuraError: ``400 postgres-error``; the transaction is rolled back.
        """
        cur = self._db.cursor()
        schemas = set(self.schemas)
        cur.execute("BEGIN")
        try:
            result: dict[str, Any] = {"result_type": "CommandOk", "result": None}
            for stmt in _statements(sql):
                translated = self._translate(stmt)
                if translated is None:
                    continue
                if read_only and not translated.lstrip().upper().startswith("SELECT"):
                    raise sqlite3.OperationalError("cannot execute in a read-only transaction")
                cur.execute(translated)
                if cur.description is not None:
                    header = [d[0] for d in cur.description]
                    rows = [["NULL" if v is None else str(v) for v in row] for row in cur]
                    result = {"result_type": "TuplesOk", "result": [header, *rows]}
                else:
                    result = {"result_type": "CommandOk", "result": None}
            cur.execute("COMMIT")
            return result
        except sqlite3.Error as exc:
            cur.execute("ROLLBACK")
            self.schemas = schemas
            raise HasuraError(400, "postgres-error", f"query execution failed: {exc}") from exc

    # --- what the GraphQL engine runs against a table ------------------------------------

    def columns(self, ref: tuple[str, str]) -> list[str]:
        """The column names of table ``(schema, table)``."""
        return [r[1] for r in self._db.execute(f'PRAGMA table_info("{ref[0]}__{ref[1]}")')]

    def rows(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        """The rows of a (translated) SELECT, as column -> value."""
        cur = self._db.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def execute(self, sql: str, params: list[Any]) -> sqlite3.Cursor:
        """Run one (translated) statement outside ``run_sql``'s transaction."""
        return self._db.execute(sql, params)
