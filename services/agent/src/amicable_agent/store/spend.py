"""Spend queries both SQL stores share: model usage per call, and per-user budget overrides.

A mixin over :class:`~.sql.SqlStore`'s connection handling; the schema is
:data:`SPEND_MIGRATION` in :data:`~.sql.MIGRATION_TEMPLATES`. Usage rows name their project
and user without a foreign key: what was spent stays spent when a project is purged, so a
user's budget still counts it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable

    from .dbapi import Connection, Cursor

T = TypeVar("T")

#: The usage and budget tables.
SPEND_MIGRATION = """
    CREATE TABLE usage_records (
        seq {serial_pk},
        project_id TEXT NOT NULL,
        user_sub TEXT,
        turn_id TEXT NOT NULL,
        model_id TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cache_read_tokens INTEGER NOT NULL,
        cache_write_tokens INTEGER NOT NULL,
        cost_usd {real} NOT NULL,
        created_at {real} NOT NULL
    );
    CREATE INDEX usage_records_project ON usage_records(project_id, created_at);
    CREATE INDEX usage_records_user ON usage_records(user_sub, created_at);
    CREATE TABLE user_budgets (
        sub TEXT PRIMARY KEY,
        limits_json TEXT NOT NULL,
        updated_at {real} NOT NULL
    );
"""


@attrs.frozen
class UsageRecord:
    """What one model call used (written after every call, so a crash loses nothing).

    Attributes:
        project_id: the project the turn ran in.
        user_sub: who asked for the turn (None without logins, or for auto-heal turns
            nobody asked for).
        turn_id: the turn (its assistant message id).
        model_id: the model's id in the deployment's catalog.
        cost_usd: estimated at the model's configured or list prices.
    """

    project_id: str
    user_sub: str | None
    turn_id: str
    model_id: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    created_at: float = attrs.field(factory=time.time)

    @property
    def tokens(self) -> int:
        """Every token sent and received."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_tokens
            + self.cache_write_tokens
        )


@attrs.frozen
class SpendTotals:
    """Sums over usage records."""

    tokens: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0


def total_of(records: list[UsageRecord]) -> SpendTotals:
    """The sums of ``records`` (the in-memory stores' query)."""
    return SpendTotals(
        tokens=sum(r.tokens for r in records),
        cost_usd=round(sum(r.cost_usd for r in records), 6),
        input_tokens=sum(r.input_tokens + r.cache_read_tokens + r.cache_write_tokens
                         for r in records),
        output_tokens=sum(r.output_tokens for r in records),
    )  # fmt: skip


_COLUMNS = (
    "project_id, user_sub, turn_id, model_id, input_tokens, output_tokens, cache_read_tokens, "
    "cache_write_tokens, cost_usd, created_at"
)


class SpendQueries:
    """The spend half of the SQL stores (see the module docstring)."""

    if TYPE_CHECKING:  # provided by SqlStore

        async def _run(self, fn: Callable[[Any], T]) -> T: ...

        def _execute(
            self, conn: Connection, query: str, params: tuple[Any, ...] = ()
        ) -> Cursor: ...

    async def record_usage(self, record: UsageRecord) -> None:
        """Store one model call's usage."""
        query = f"INSERT INTO usage_records ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
        params = (
            record.project_id, record.user_sub, record.turn_id, record.model_id,
            record.input_tokens, record.output_tokens, record.cache_read_tokens,
            record.cache_write_tokens, record.cost_usd, record.created_at,
        )  # fmt: skip
        await self._run(lambda c: self._execute(c, query, params))

    async def spend_since(
        self, since: float, *, project_id: str | None = None, user_sub: str | None = None
    ) -> SpendTotals:
        """The sums of usage since ``since`` (epoch seconds) of a project and/or a user."""
        where = ["created_at >= ?"]
        params: list[Any] = [since]
        if project_id is not None:
            where.append("project_id = ?")
            params.append(project_id)
        if user_sub is not None:
            where.append("user_sub = ?")
            params.append(user_sub)
        query = (
            "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            "COALESCE(SUM(cache_read_tokens), 0), COALESCE(SUM(cache_write_tokens), 0), "
            f"COALESCE(SUM(cost_usd), 0) FROM usage_records WHERE {' AND '.join(where)}"
        )

        def select(conn: Connection) -> SpendTotals:
            i, o, r, w, cost = self._execute(conn, query, tuple(params)).fetchone()
            i, o, r, w = int(i), int(o), int(r), int(w)
            return SpendTotals(i + o + r + w, round(float(cost), 6), i + r + w, o)

        return await self._run(select)

    async def user_limits(self, sub: str) -> dict[str, Any] | None:
        """A user's budget overrides (``{"daily_usd": 5, …}``), or None."""
        query = "SELECT limits_json FROM user_budgets WHERE sub=?"

        def select(conn: Connection) -> dict[str, Any] | None:
            row = self._execute(conn, query, (sub,)).fetchone()
            value = json.loads(row[0]) if row else None
            return value if isinstance(value, dict) else None

        return await self._run(select)

    async def set_user_limits(self, sub: str, limits: dict[str, Any] | None) -> None:
        """Set (or, with None, drop) a user's budget overrides."""
        if limits is None:
            query = "DELETE FROM user_budgets WHERE sub=?"
            await self._run(lambda c: self._execute(c, query, (sub,)))
            return
        query = (
            "INSERT INTO user_budgets (sub, limits_json, updated_at) VALUES (?,?,?) "
            "ON CONFLICT (sub) DO UPDATE SET limits_json=excluded.limits_json, "
            "updated_at=excluded.updated_at"
        )
        params = (sub, json.dumps(limits), time.time())
        await self._run(lambda c: self._execute(c, query, params))
