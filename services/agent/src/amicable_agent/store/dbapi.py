"""The part of the DB-API the SQL stores use (``sqlite3`` and ``psycopg`` both fit)."""

from __future__ import annotations

from typing import Any, Protocol


class Cursor(Protocol):
    """The part of a DB-API cursor the queries use."""

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    @property
    def rowcount(self) -> int: ...


class Connection(Protocol):
    """The part of ``sqlite3.Connection`` / ``psycopg.Connection`` the queries use."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...
